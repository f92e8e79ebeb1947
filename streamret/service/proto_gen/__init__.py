"""Code generated from proto/streamret/v1/streamret.proto by scripts/gen_proto.py; do not edit by hand."""
