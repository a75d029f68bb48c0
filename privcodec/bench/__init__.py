"""Benchmark commands: `privcodec bench rd`, `privcodec bench detect`."""
