"""Encoders: one per tower family, all keeping the contract of `base.Encoder.encode`."""
