"""Sentence-aware chunking: windows of whole sentences with overlap, keeping exact character offsets."""

from __future__ import annotations

from index.models import Chunk, Sentence

__all__ = ["chunk_document"]


def chunk_document(doc_id: str, text: str, sentences: list[Sentence], max_chars: int = 800,
                   overlap_sentences: int = 1) -> list[Chunk]:
    """Group sentences into chunks of at most ``max_chars`` characters, overlapping by whole sentences.

    A sentence longer than ``max_chars`` becomes a chunk on its own rather than being cut, so a chunk never
    starts or ends mid-sentence and every quote taken from it is a whole sentence of the article.

    :param doc_id: the document's id, used to name chunks ``{doc_id}#{seq}``.
    :param text: the stored (cleaned) document text.
    :param sentences: the document's sentences, in order.
    :param max_chars: soft upper bound on a chunk's length; 800 characters keep MiniLM's 256-token window.
    :param overlap_sentences: sentences repeated at the start of the next chunk.
    :returns: chunks with ``text == document.text[start:end]``.
    :raises ValueError: if ``max_chars`` or ``overlap_sentences`` are out of range.
    """
    if max_chars < 50:
        raise ValueError(f"max_chars must be at least 50. Currently, max_chars is {max_chars}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be >= 0. Currently, it is {overlap_sentences}")
    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        j = i + 1
        while j < len(sentences) and sentences[j].end - sentences[i].start <= max_chars:
            j += 1
        start, end = sentences[i].start, sentences[j - 1].end
        chunks.append(Chunk(chunk_id=f"{doc_id}#{len(chunks)}", doc_id=doc_id, seq=len(chunks),
                            start=start, end=end, text=text[start:end]))
        if j >= len(sentences):
            break
        # Step forward, keeping up to `overlap_sentences` sentences but always making progress.
        i = max(i + 1, j - overlap_sentences)
    return chunks
