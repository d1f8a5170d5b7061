"""The task kinds Kiln trains: one module each, implementing training.kinds.TaskKind and registered in
training.kinds.KINDS. Each owns what differs for its kind of classifier, from raw data to the exported graph."""
