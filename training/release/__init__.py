"""After compression: test metrics, the promotion gate, registration in the model store and report.json."""
