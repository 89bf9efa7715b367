"""DynaQuant mode: bitsandbytes formats, per-step fine-tuning, multi-term reward, PPO."""
