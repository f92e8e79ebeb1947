#!/usr/bin/env bash
# For session 17 (issue 18), written in session 16, not run yet: the calls, each one device call of
# bench/device_legs.sh (its header says what each carries), chained at once on one warm machine.
#
# Session 16 found that 2.5x the text (all ten training sources, 15.5 M tokens) raised the held-out passage
# cosine 0.831 -> 0.846, and that a third leg over the same text moved it no further (0.847) while the training
# sample's went on rising: the held-out sets are technical manuals (Python, PostgreSQL), most of the training
# text is not. So twelve more technical manuals from Debian main (streamret.train.sources: perl-doc, rust-doc's
# books, apache2-doc, vim's help, nodejs-doc, the Debian handbook and policy, erlang-doc, the octave/zsh/guile
# info manuals, gnuplot-doc, bind9-doc, docker-doc), 49.5 M characters more (the training text doubles: 29.0 M
# tokens). The pack, built here:
#   python -m streamret.train.prepare --only <the twelve>   (the ten older sources are kept in .distill)
#   python -m streamret.train.train_pack --sources <all 22> --out .device/tf2 --max-mib 90
#   cd .device/tf2 && mkdir data_a data_b && for s in linux-doc bible-kjv gcide wordnet fortunes jargon cfi \
#     debian-reference gnu-standards git-doc; do mv data/$s.jsonl.xz data_a/; done && mv data/* data_b/ && rmdir data
# (data_a: the ten older sources, 12.8 MiB; data_b: the twelve new ones, 9.9 MiB; the teacher 20.9 MiB, with the
# tree 62.5 MiB: data and teacher together do not fit one call beside the tree.)
#
# Predicted: held-out passage cosine 0.846 -> 0.855-0.865, passage R@10 0.547 -> 0.56, document recall@10
# within 0.01 of 0.862 (more manuals should help the 8-32k bucket most).
#
#   call                                              carry                                        timeout_s
#   PACK=.device/tf2 bash bench/device_legs.sh stage data_a   [".device/tf2/data_a"]                  120
#   PACK=.device/tf2 bash bench/device_legs.sh stage data_b   [".device/tf2/data_b"]                  120
#   PACK=.device/tf2 bash bench/device_legs.sh fresh          [".device/tf2/teacher", ".device/tf2/manifest.json"]  600
#   PACK=.device/tf2 bash bench/device_legs.sh resume         []                                      600
#   PACK=.device/tf2 bash bench/device_legs.sh eval           [".quality/heldout", ".device/qT"]      300
set -u
PACK=.device/tf2 exec bash bench/device_legs.sh "$@"
