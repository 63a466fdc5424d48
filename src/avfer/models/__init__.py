"""Models: visual CNN backbones, temporal (GRU/LSTM) heads, audio models and early fusion."""
