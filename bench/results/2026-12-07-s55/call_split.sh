#!/usr/bin/env bash
# Session 55 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 260 s).
# A/B of WorkItem.split_after (where no record will want a stream's state between chunks, here every engine of the
# e2e parts, which keep none, and a batch job's temporaries anywhere: a step that completes a chunk goes on into the
# next one and may split it, where before a share stopped at the first chunk it completed; a read that needs a chunk
# boundary ends the stream's work at the next one) against the commit before it (.device/ab_base: `git archive` of
# its streamret, bench, kernels and pyproject.toml, without bench/results, bench/RESULTS.md and the model assets,
# which bench/e2e_ab.py links from this tree). bench/e2e_ab.py --a-tree (A the base, B this tree) over bench/e2e.py
# --parts packed,engine,batch --packed-seconds 0.3: a warm-up run (small batch parts, new, not read), then A / B / B
# / A.
# Why: the batch job's 64 KiB chunks hold about 17 k tokens, so two documents sharing a 32 k step each took 16 k of
# a chunk and, in the next step, the few hundred left, and a document alone one chunk a step (two are 34 k, over the
# 32,768) (session 54: 1.3 streams and
# 23.8 k tokens a step, 269 steps for 6.4 M tokens); at 1,024 streams a share of about 290-470 tokens stopped at the
# end of each 500-token chunk (session 54: 23.1 k tokens a step of the 32.8 k budget, 69 streams). On the VM
# (long_docs_host.py, 2 documents of 800 KB, the real engine with the model slept): 16 steps of 24.5 k tokens ->
# 12-13 of 30.1-32.6 k.
# Predicted: engine at 1,024 streams +10-30% (tokens a step 23 k -> 30 k and more at about the same host work a
# step, up to the device's bound); batch long +8-20%; engine at 64 streams and batch short within +-5% (whole queues
# or one chunk a document: nothing to go on into).
# Rule: the change stays unless engine 1,024 or batch long reads lower in both pairs, or another part more than 5%
# lower in both.
# SHORT_DOCS (default 8000) and PACKED_S (0.3) make the runs shorter where device time is short.
set -u
SHORT_DOCS=${SHORT_DOCS:-8000}; PACKED_S=${PACKED_S:-0.3}
source bench/device_env.sh
python3 bench/e2e_ab.py --a-tree .device/ab_base --pairs 2 --timeout 110 --warmup-timeout 90 \
  --warmup "--parts batch --long-docs 4 --short-docs 500" --out $OUT -- \
  --text .device/text/man.txt.gz --packed-seconds $PACKED_S --parts packed,engine,batch --engine-procs auto \
  --short-docs $SHORT_DOCS
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
