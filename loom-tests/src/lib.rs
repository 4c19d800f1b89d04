//! Loom models of quay's protocols live in `tests/`; run them with `--cfg quay_loom` (see `docs/verification.md`).
