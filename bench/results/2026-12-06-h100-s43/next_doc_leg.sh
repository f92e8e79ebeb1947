#!/usr/bin/env bash
# Written in session 43 for issue 18's next training leg: the document InfoNCE with the document role in the loop
# (distill --doc-map: documents scored through the shipped, fixed document map against plain query passages), from
# the shipped weights, over eight long-document manuals (.device/tfdoc: perl-doc erlang-doc racket-doc llvm-doc
# rust-doc nodejs-doc gnu-info vim-doc, 11 MiB of data and the 18 MiB int8 teacher; built with
#   python -m streamret.train.train_pack --distill .distill --out .device/tfdoc --sources <the eight> --max-mib 60
# and cut with bash bench/stage_parts.sh .device/tfdoc .device/stage/tfdoc 12).
# The calls, in order, on one warm machine (it is released after 30 s idle, taking /tmp with it):
#   bash bench/device_legs.sh part .device/stage/tfdoc/pack.tar.aa     carry [".device/stage/tfdoc/pack.tar.aa"]
#   bash bench/device_legs.sh part .device/stage/tfdoc/pack.tar.ab     carry [".device/stage/tfdoc/pack.tar.ab"]
#   bash bench/device_legs.sh part .device/stage/tfdoc/pack.tar.ac     carry [".device/stage/tfdoc/pack.tar.ac"]
#   bash bench/device_legs.sh unpack                                   carry []
#   bash bench/results/2026-12-06-h100-s43/next_doc_leg.sh             carry [".quality/heldout", ".device/qT"]  (600 s)
# (.device/qT: session 43's teacher phase, a copy of .device/qteacher.)
# It returns the leg's fp16 shards and the evaluation of its weights in the query role (their own document map is
# not fitted yet). For the document role, here afterwards: merge the shards (python -m streamret.train.export DIR
# --dst FOLDER), fit their map (python -m streamret.train.document_map --distill .distill --model FOLDER: 14 min
# on the CPU), then read it with bench/doc_whitening.py --model FOLDER --maps none shipped (CPU) or with quality.py
# on the GPU after putting FOLDER's files in place of streamret/assets/default's in the working tree (a second
# 38 MB model does not fit a call beside the 50 MiB tree; restore them after with git checkout of those files).
# Predicted: the query role within 0.01 of the shipped 0.885 (the leg is short and the mean loss holds the plain
# embedding), passages within 0.005 of 0.898 cosine; the document role with its refitted map 0.900-0.915 overall
# and 0.875-0.895 at 8-32k: the InfoNCE has not carried over to held-out documents before (sessions 7-19), so
# no gain is as likely as one.
set -u
export INIT=streamret/assets/default DOC_MAP=streamret/assets/default MINUTES=${MINUTES:-4.5} DOC_NCE=${DOC_NCE:-0.05}
exec bash bench/device_legs.sh doc
