// The chat page: asks /v1/chat with server-sent events, shows the answer with numbered citation chips, and opens
// the cited article with the quoted characters highlighted. Article text is only ever set as text (textContent),
// never parsed as HTML, so markup inside a document cannot run.
"use strict";

const state = { conversationId: null };
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function sourceLabel(ref) {
  const parts = [ref.source || "unknown outlet", ref.published || "undated"];
  return parts.join(", ");
}

function setStatus(text) { $("status").textContent = text || ""; }

// --- the source panel ----------------------------------------------------------------------------------------
async function openSource(docId, start, end) {
  setStatus("Opening the article…");
  const response = await fetch(`/v1/documents/${encodeURIComponent(docId)}`);
  if (!response.ok) {
    setStatus(`Could not open the article (${response.status}).`);
    return;
  }
  const doc = await response.json();
  $("source-title").textContent = doc.title;
  $("source-meta").textContent = [doc.source, doc.published, doc.url].filter(Boolean).join(" · ");
  const body = $("source-text");
  body.replaceChildren(
    document.createTextNode(doc.text.slice(0, start)),
    el("mark", null, doc.text.slice(start, end)),
    document.createTextNode(doc.text.slice(end)),
  );
  const mark = body.querySelector("mark");
  mark.id = "highlight";
  $("source").hidden = false;
  mark.scrollIntoView({ block: "center" });
  setStatus("");
}

function chip(n, ref, start, end) {
  const button = el("button", "chip", `[${n}] ${sourceLabel(ref)}`);
  button.type = "button";
  button.title = ref.title;
  button.dataset.doc = ref.doc_id;
  button.addEventListener("click", () => openSource(ref.doc_id, start, end));
  return button;
}

// --- one turn ------------------------------------------------------------------------------------------------
function feedbackButtons(question, answer) {
  const box = el("div", "feedback");
  box.append(el("span", null, "Was this right?"));
  for (const [rating, label] of [["up", "Right"], ["down", "Wrong"]]) {
    const button = el("button", `feedback-${rating}`, label);
    button.type = "button";
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", async () => {
      const response = await fetch("/v1/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          rating, question: answer.resolved_question, answer: answer.answer, citations: answer.citations,
          conversation_id: answer.conversation_id, turn: answer.turn,
        }),
      });
      if (response.ok) {
        box.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
        setStatus("Thanks: your rating is stored with the question and its sources.");
      } else {
        setStatus(`Could not store the rating (${response.status}).`);
      }
    });
    box.append(button);
  }
  return box;
}

function renderAnswer(item, answer) {
  const body = item.querySelector(".body");
  body.replaceChildren();
  if (answer.abstained) {
    body.append(el("p", "abstain", answer.message));
    if (answer.passages.length) {
      body.append(el("p", "nearest-heading", "Nearest passages:"));
      const chips = el("div", "chips");
      answer.passages.forEach((p, i) => {
        chips.append(chip(i + 1, p, p.start, p.end));
        body.append(el("p", "passage", `[${i + 1}] ${p.title}: ${p.text.slice(0, 200)}${p.text.length > 200 ? "…" : ""}`));
      });
      body.append(chips);
    }
  } else {
    const strong = el("strong", null, answer.answer);
    const line = el("p", "answer");
    line.append(strong);
    body.append(line);
    body.append(el("blockquote", "supporting", answer.supporting_sentence));
    const chips = el("div", "chips");
    answer.citations.forEach((c, i) => chips.append(chip(i + 1, c, c.start, c.end)));
    body.append(chips);
    if (answer.sources_differ) {
      const differ = el("div", "differ");
      differ.append(el("p", "differ-heading", "Sources differ:"));
      const altChips = el("div", "chips");
      answer.alternatives.forEach((a, i) => {
        const n = answer.citations.length + i + 1;
        differ.append(el("p", "passage", `[${n}] ${a.answer}: “${a.citation.quote}”`));
        altChips.append(chip(n, a.citation, a.citation.start, a.citation.end));
      });
      differ.append(altChips);
      body.append(differ);
    }
  }
  body.append(feedbackButtons(item.dataset.message, answer));
}

function newTurn(message) {
  const item = el("li", "turn");
  item.dataset.message = message;
  item.append(el("p", "question", message));
  item.append(el("p", "resolved"));
  item.append(el("div", "body"));
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// --- server-sent events over fetch (EventSource cannot POST) -------------------------------------------------
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function ask(message) {
  const item = newTurn(message);
  setStatus("Searching the archive…");
  $("send").disabled = true;
  try {
    const response = await fetch("/v1/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ conversation_id: state.conversationId, message }),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ detail: response.statusText }));
      throw new Error(problem.detail || `HTTP ${response.status}`);
    }
    for await (const { event, data } of sseEvents(response)) {
      if (event === "resolved") {
        state.conversationId = data.conversation_id;
        if (data.resolved_question !== data.message) {
          item.querySelector(".resolved").textContent = `Answered as: ${data.resolved_question}`;
        }
      } else if (event === "passages") {
        setStatus(`Reading ${data.passages.length} passages…`);
      } else if (event === "answer") {
        renderAnswer(item, data);
      } else if (event === "error") {
        throw new Error(data.detail);
      }
    }
    setStatus("");
  } catch (error) {
    item.querySelector(".body").replaceChildren(el("p", "error", `Error: ${error.message}`));
    setStatus("");
  } finally {
    $("send").disabled = false;
    $("message").focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const message = $("message").value.trim();
    if (!message) return;
    $("message").value = "";
    ask(message);
  });
  $("new-conversation").addEventListener("click", () => {
    state.conversationId = null;
    $("log").replaceChildren();
    $("source").hidden = true;
    $("message").focus();
  });
  $("close-source").addEventListener("click", () => { $("source").hidden = true; });
  $("message").focus();
});
