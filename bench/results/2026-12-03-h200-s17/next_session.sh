#!/usr/bin/env bash
# For session 18 (issue 18), written in session 17, not run yet: five device calls of bench/device_legs.sh,
# chained at once on one warm machine (released after 30 s idle, taking /tmp with it).
#
# Session 17 found that twelve technical manuals more (22 sources, 29.0 M tokens) took the held-out passage
# cosine from 0.846 to 0.884 and document recall from 0.862 to 0.874, at the same steps and train-sample
# cosine as session 16: text like the held-out manuals is what the student lacked. So fifteen more manuals and
# references from Debian main (streamret.train.sources, "session 17": libreoffice-help, libvirt-doc,
# postfix-doc, maxima-doc, cmake-doc, llvm-doc, grass-doc, dpdk-doc, gcl-doc, gimp-help, exim4-doc, ghc-doc,
# man-pages, racket-doc, lilypond-doc; 52.3 M characters; no Python or SQL manual, and
# `python bench/heldout_overlap.py` checks none copies the held-out text), 43.1 M tokens in all. The pack:
#   python -m streamret.train.prepare --only <the fifteen>    (the 22 older sources are kept in .distill)
#   python -m streamret.train.train_pack --sources <all 37> --out .device/tf3 --max-mib 110
#   cd .device/tf3 && mkdir data_a data_b data_c && (data_a: the ten sources of session 14; data_b: the
#   twelve of session 16; data_c: the fifteen of session 17; see session 16's next_session.sh for the lists)
# (12.8, 9.9 and 10.0 MiB; the teacher 20.9 MiB, with the tree 62.7 MiB.)
#
# Predicted: held-out passage cosine 0.884 -> 0.89-0.90, passage R@10 0.576 -> 0.58-0.59, document recall@10
# 0.874 -> 0.875-0.885 (8-32k 0.864 -> 0.87-0.88).
#
#   call                                                             carry                                 timeout_s
#   bash bench/results/2026-12-03-h200-s17/next_session.sh stage data_a   [".device/tf3/data_a"]          120
#   bash bench/results/2026-12-03-h200-s17/next_session.sh stage data_b   [".device/tf3/data_b"]          120
#   bash bench/results/2026-12-03-h200-s17/next_session.sh stage data_c   [".device/tf3/data_c"]          120
#   bash bench/results/2026-12-03-h200-s17/next_session.sh fresh          [".device/tf3/teacher", ".device/tf3/manifest.json"]  600
#   bash bench/results/2026-12-03-h200-s17/next_session.sh resume         [".quality/heldout", ".device/qT"]  600
#   bash bench/device_legs.sh doc   (only with >= 380 s of device time left)  [".quality/heldout", ".device/qT"]  400
# The resume leg is 8.0 minutes and evaluates its weights in the same call (EVAL=1, ~45 s; only the
# result's JSON and the table come back beside the shards). If that evaluation is lost, merge the returned
# shards here and evaluate on the CPU (26 min in session 17): `python -m streamret.train.export <files_at>/model --dst X`,
# `python bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model X --device cpu
# --no-engine --out-dir D`.
# The optional sixth call asks whether the document objective (in sessions 7-14 it cost passage agreement, its
# InfoNCE moving the query passages; in session 15, with them fixed, it bought no document recall in 541 steps)
# helps a student whose passages are now close to the teacher's: a 4.5-minute leg from the resume leg's merged weights with the document InfoNCE at 0.05 and the
# query passages fixed (--doc-query-grad 0), evaluated in the same call. Predicted: document recall@10 up
# 0.005-0.015 over the resume leg's, passage cosine at most 0.005 below it. A reading, not measured: a student
# that only matches the teacher's passages and chunk means tends to the teacher's own chunk-mean recall (0.887),
# under issue 18's 0.907, so some retrieval objective has to carry the rest.
set -u
export PACK=.device/tf3 SCHEDULE=16.8
[ "$1" = resume ] && export MINUTES=8.0 EVAL=1
exec bash bench/device_legs.sh "$@"
