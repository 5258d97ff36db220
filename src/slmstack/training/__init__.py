"""Training loops, calibration and early stopping."""
