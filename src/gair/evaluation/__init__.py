"""Downstream evaluation of frozen GAIR embeddings (no Kedro): embeddings, probes,
retrieval and geolocalisation, the sample world's tasks, benchmark readers, reports."""
