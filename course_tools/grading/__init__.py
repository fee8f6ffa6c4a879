"""Grading: the out-of-kernel checker that decides every score, and the kernel-side link it drives."""
