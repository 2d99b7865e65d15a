"""Shared fixtures. Real parts everywhere; tiny random or seconds-trained models only."""

import os

# Before torch loads: OpenMP threads that spin while waiting make every op ~10x slower
# as soon as anything else (a decode thread, another process) wants the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
