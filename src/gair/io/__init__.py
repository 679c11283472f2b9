"""Readers and writers of the real formats: Global Streetscapes, Sentinel-2 L2A, folders."""
