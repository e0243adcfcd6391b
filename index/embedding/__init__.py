"""Sentence-transformers embeddings: the embedder, its bulk engines (PyTorch, OpenVINO, int8), the query engine
(ONNX Runtime) and the measured choice between them. Imports only the top-level models and errors."""
