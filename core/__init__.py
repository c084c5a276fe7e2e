"""The sans-I/O core: settings, audio (resampling, VAD, segmenter), engines, utterance assembly, the decode
scheduler, the transcriber and translation policies, analytics over records. It does no network or
event-loop I/O (the import contract forbids it); the shells in ``streams``, ``agents`` and ``gateway`` do."""
