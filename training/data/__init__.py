"""Raw data to a clean, split Dataset and its report: ingest, clean, duplicates, split, inspect, plots, the sample
data, and encoding items for a model spec. Never imports TensorFlow (checked by `make lint`)."""
