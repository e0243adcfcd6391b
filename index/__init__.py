"""Documents, chunks, embeddings and the vector store: everything newsroom-qa keeps on disk."""
