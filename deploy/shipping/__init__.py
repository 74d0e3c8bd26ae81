"""What every deployment target ships: the model file read and checked once (`model`), an
artifact opened for serving (`served`, what Triton's Python backend and Ray's replica both run),
and the names Kubernetes' API server accepts (`kubernetes_names`). Targets import this and the
foundation (artifacts, runtimes, inputs, the Predictor, evaluation), never each other."""
