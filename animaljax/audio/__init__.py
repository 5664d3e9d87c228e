"""Audio before the model: reading files, cutting windows, and the on-device front end.

io.py        decode, downmix, resample and validate a file to float32 mono (numpy; never jax)
windows.py   the rules for cutting a clip into windows: `pack_window_starts` (the packer) and
             `cover_window_starts` (windowed evaluation and inference); numpy, no jax
frontend.py  waveform -> log-mel / Kaldi fbank features, inside the jitted model (jax)
"""
