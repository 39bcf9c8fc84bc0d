"""Audio in: decode any input to 16 kHz mono float32; formats; voice activity (VAD); test signals."""
