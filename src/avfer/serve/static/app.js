// avfer serve's page: upload a file (drop or pick) → progress → annotated video, timeline, tracks,
// downloads; and the webcam view (getUserMedia, one frame at a time to /api/frame, overlay drawn
// on a canvas over the video). Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let LABELS = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"];

// --- header and tabs ---------------------------------------------------------------------
fetch("/api/health").then((r) => r.json()).then((h) => {
  LABELS = h.labels;
  $("model").textContent = `model: ${h.model}`;
}).catch(() => { $("model").textContent = "server unreachable"; });

for (const tab of document.querySelectorAll("button.tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll("button.tab")) t.classList.toggle("active", t === tab);
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== tab.dataset.view;
    if (tab.dataset.view !== "cam-view") stopCamera();
  });
}

// --- file view ---------------------------------------------------------------------------
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });

function showProgress(text, fraction) {
  $("progress").hidden = false;
  $("progress-text").textContent = text;
  const bar = $("progress-bar");
  if (fraction === null) bar.removeAttribute("value"); else bar.value = fraction;
}

function showError(message) {
  $("error").hidden = false;
  $("error").textContent = message;
}

function upload(file) {
  $("error").hidden = true;
  $("result").hidden = true;
  $("progress-name").textContent = file.name;
  showProgress("uploading…", 0);
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/predict?wait=false");
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) showProgress(`uploading ${Math.round((100 * e.loaded) / e.total)} %`, e.loaded / e.total);
  };
  xhr.onload = () => {
    const body = xhr.response || {};
    if (xhr.status !== 202) {
      $("progress").hidden = true;
      showError(body.error || `upload failed (HTTP ${xhr.status})`);
      return;
    }
    poll(body.links.job);
  };
  xhr.onerror = () => { $("progress").hidden = true; showError("upload failed: the server cannot be reached"); };
  xhr.send(form);
}

async function poll(url) {
  for (;;) {
    let job;
    try {
      const r = await fetch(url);
      job = await r.json();
      if (!r.ok) { $("progress").hidden = true; showError(job.error); return; }
    } catch (err) {
      $("progress").hidden = true;
      showError(`lost the server: ${err}`);
      return;
    }
    if (job.state === "done") { $("progress").hidden = true; showResult(job); return; }
    if (job.state === "running" && job.progress.total > 0) {
      const p = job.progress;
      showProgress(`predicting: frame ${p.done} of ${p.total}`, p.done / p.total);
    } else if (job.state === "running") {
      showProgress("predicting…", null);
    } else {
      showProgress(job.position ? `queued (${job.position} ahead)` : "queued", null);
    }
    await new Promise((ok) => setTimeout(ok, 400));
  }
}

function fillBars(el, probs) {
  el.replaceChildren();
  for (const e of LABELS) {
    const p = probs[e] || 0;
    const name = document.createElement("span");
    name.textContent = e;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = p.toFixed(2);
    el.append(name, bar, value);
  }
}

function showResult(job) {
  const s = job.result;
  const links = job.links;
  $("result-name").textContent = s.input;
  if (s.status !== "ok") showError(s.error);
  $("result").hidden = false;
  $("label").textContent = s.label || "no label";
  const info = [];
  if (s.kind === "video") info.push(`${s.frames} frames at ${s.fps} fps, a face in ${s.face_frames}`);
  else if (s.kind === "image") info.push(`${s.faces} face(s)`);
  info.push(`model ${s.model}`);
  $("result-info").textContent = info.join(" · ");
  fillBars($("bars"), s.probabilities || {});

  const video = $("video");
  const image = $("image");
  video.hidden = image.hidden = true;
  if (links.annotated && links.annotated.endsWith(".mp4")) {
    video.src = links.annotated;
    video.hidden = false;
    video.play().catch(() => {});
  } else if (links.annotated) {
    image.src = links.annotated;
    image.hidden = false;
  }
  $("timeline").hidden = !links.timeline;
  if (links.timeline) $("timeline").src = links.timeline;

  const body = $("tracks").querySelector("tbody");
  body.replaceChildren();
  for (const t of s.tracks || []) {
    const row = document.createElement("tr");
    const cells = [`#${t.face_id}`, t.frames, t.start.toFixed(2), t.end.toFixed(2), t.label,
      t.probabilities[t.label].toFixed(2)];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      row.append(td);
    }
    body.append(row);
  }
  const names = { json: "summary (JSON)", csv: "per-frame table (CSV)", annotated: "annotated media", timeline: "timeline (PNG)" };
  const list = $("downloads");
  list.replaceChildren();
  for (const [kind, title] of Object.entries(names)) {
    if (!links[kind]) continue;
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = links[kind];
    a.download = "";
    a.textContent = title;
    li.append(a);
    list.append(li);
  }
}

// --- webcam view -------------------------------------------------------------------------
let stream = null;
let running = false;
const grab = document.createElement("canvas");

$("cam-start").addEventListener("click", startCamera);
$("cam-stop").addEventListener("click", stopCamera);

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    $("cam-status").textContent = `no camera: ${err.message || err}`;
    return;
  }
  const cam = $("cam");
  cam.srcObject = stream;
  await cam.play().catch(() => {});
  $("cam-start").disabled = true;
  $("cam-stop").disabled = false;
  running = true;
  loop();
}

function stopCamera() {
  running = false;
  if (stream) for (const t of stream.getTracks()) t.stop();
  stream = null;
  $("cam-start").disabled = false;
  $("cam-stop").disabled = true;
}

async function loop() {
  const cam = $("cam");
  let answered = 0;
  const t0 = performance.now();
  while (running) {
    if (!cam.videoWidth) { await new Promise((ok) => setTimeout(ok, 100)); continue; }
    const scale = Math.min(1, 640 / cam.videoWidth);
    grab.width = Math.round(cam.videoWidth * scale);
    grab.height = Math.round(cam.videoHeight * scale);
    grab.getContext("2d").drawImage(cam, 0, 0, grab.width, grab.height);
    const blob = await new Promise((ok) => grab.toBlob(ok, "image/jpeg", 0.85));
    let result;
    try {
      const r = await fetch("/api/frame", { method: "POST", body: blob, headers: { "Content-Type": "image/jpeg" } });
      result = await r.json();
      if (!r.ok) {
        $("cam-status").textContent = result.error;
        await new Promise((ok) => setTimeout(ok, 1000));
        continue;
      }
    } catch (err) {
      $("cam-status").textContent = `lost the server: ${err}`;
      await new Promise((ok) => setTimeout(ok, 1000));
      continue;
    }
    answered += 1;
    const fps = (1000 * answered) / (performance.now() - t0);
    $("cam-status").textContent = `${fps.toFixed(1)} frames/s predicted, ${result.faces.length} face(s)`;
    if (running) drawLive(result);
  }
  $("overlay").getContext("2d").clearRect(0, 0, $("overlay").width, $("overlay").height);
  $("live-label").hidden = true;
}

function drawLive(result) {
  const cam = $("cam");
  const canvas = $("overlay");
  canvas.width = cam.clientWidth;
  canvas.height = cam.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const sx = canvas.width / result.width;
  const sy = canvas.height / result.height;
  ctx.font = "14px system-ui, sans-serif";
  for (const f of result.faces) {
    const [x1, y1, x2, y2] = f.box;
    ctx.strokeStyle = "#35d07f";
    ctx.lineWidth = 3;
    ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    // one bar per emotion, right of the box (left of it when there is no room)
    const w = 110;
    let bx = x2 * sx + 8;
    if (bx + w + 60 > canvas.width) bx = Math.max(0, x1 * sx - w - 68);
    LABELS.forEach((e, i) => {
      const y = y1 * sy + i * 18;
      const p = f.probabilities[e];
      ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
      ctx.fillRect(bx, y, w + 60, 16);
      ctx.fillStyle = e === f.label ? "#35d07f" : "#8fb3ff";
      ctx.fillRect(bx + 60, y + 3, w * p, 10);
      ctx.fillStyle = "#fff";
      ctx.fillText(e, bx + 3, y + 12);
    });
    ctx.fillStyle = "#35d07f";
    ctx.fillText(`#${f.face_id} ${f.label}`, x1 * sx, Math.max(14, y1 * sy - 6));
  }
  const label = $("live-label");
  label.hidden = false;
  label.textContent = result.label || "no face";
}
