// The draw-a-digit page: strokes on a canvas (pointer events: mouse, pen or finger), the
// drawing sent to POST /predict as a PNG while you draw, the top 3 classes shown; when the
// model answers no class (predicted: null, unsure) the page says so above its guesses.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const topList = document.getElementById("top");
const statusLine = document.getElementById("status");
let drawing = false;
let inked = false;
let inFlight = false;
let pending = false;

function clearPad() {
  ink.fillStyle = "#fff";  // white paper: the PNG has no transparency
  ink.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  topList.replaceChildren();
  statusLine.textContent = "Draw with the mouse or a finger.";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function show(answer) {
  topList.replaceChildren(...answer.top.map(({ class: name, probability }) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const share = document.createElement("span");
    share.className = "p";
    share.textContent = `${(probability * 100).toFixed(1)}%`;
    item.append(label, bar, share);
    return item;
  }));
  topList.dataset.predicted = answer.predicted ?? "";
  const kind = document.getElementById("kind").textContent;
  statusLine.textContent = answer.predicted === null ? `not sure — is this a ${kind}?` : "";
}

// One request at a time; strokes drawn meanwhile are sent when it returns. The canvas's
// data-state is "asking" until the answer for the current drawing is shown.
async function ask() {
  if (!inked) return;
  pad.dataset.state = "asking";
  if (inFlight) { pending = true; return; }
  inFlight = true;
  try {
    const png = await new Promise((done) => pad.toBlob(done, "image/png"));
    const reply = await fetch("/predict", {
      method: "POST", headers: { "Content-Type": "image/png" }, body: png,
    });
    const body = await reply.json();
    if (reply.ok && inked) show(body);
    else if (!reply.ok) statusLine.textContent = body.error;
  } catch (err) {
    statusLine.textContent = `No answer from the server (${err})`;
  } finally {
    inFlight = false;
    if (pending) { pending = false; ask(); } else { pad.dataset.state = "answered"; }
  }
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x + 0.01, y);
  ink.stroke();
  inked = true;
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
  ask();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    ask();
  });
}
document.getElementById("clear").addEventListener("click", clearPad);

ink.lineWidth = 20;
ink.lineCap = "round";
ink.lineJoin = "round";
ink.strokeStyle = "#000";
clearPad();

fetch("/health").then((reply) => reply.json()).then((health) => {
  document.getElementById("model").textContent =
    `${health.model} model trained on ${health.dataset}`;
  document.getElementById("classes").textContent = health.classes.join(" · ");
  if (!health.classes.every((name) => /^\d$/.test(name))) {
    document.getElementById("kind").textContent = "garment";
  }
}).catch(() => { document.getElementById("model").textContent = "The server did not answer."; });
