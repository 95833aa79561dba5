"""DeepSeek-V3-mini: a tiny DeepSeek-V3-shaped model (MLA + DeepSeekMoE) trained by real
`torch.distributed` ranks, with step-numbered checkpoints the supervisor can read.

Run from the repository root: `python -m examples.deepseek_v3_mini.train --help`.
`checkpoint` is stdlib-only (the controller reads the layout); everything else imports torch.
"""
