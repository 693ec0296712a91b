"""audio_source: device, file or generator audio to loudness, spectrum, onset and tempo features."""
