// camreid operator UI: photo drop/paste/box drawing, timelines, segment player, camera refresh.
// Plain JavaScript, no dependencies (the Content-Security-Policy allows only this file).
"use strict";

function setupSearch() {
  const form = document.getElementById("search-form");
  if (!form) return;
  const input = document.getElementById("photo");
  const drop = document.getElementById("drop");
  const canvas = document.getElementById("canvas");
  const boxField = document.getElementById("box");
  const boxText = document.getElementById("box-text");
  const ctx = canvas.getContext("2d");
  let image = null, scale = 1, box = null, dragFrom = null;

  function draw() {
    if (!image) return;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (box) {
      ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 2;
      ctx.strokeRect(box[0] / scale, box[1] / scale, (box[2] - box[0]) / scale, (box[3] - box[1]) / scale);
    }
    boxField.value = box ? box.map(Math.round).join(",") : "";
    boxText.textContent = box ? "box " + box.map(Math.round).join(", ") + " px" : "";
  }

  function load(file) {
    if (!file) return;
    if (input.files[0] !== file) {  // a dropped or pasted file goes into the form's file field
      const dt = new DataTransfer(); dt.items.add(file); input.files = dt.files;
    }
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      image = img; box = null;
      scale = Math.max(img.naturalWidth / 640, img.naturalHeight / 360);  // small crops are shown larger
      canvas.width = Math.round(img.naturalWidth / scale); canvas.height = Math.round(img.naturalHeight / scale);
      canvas.hidden = false; document.getElementById("drop-hint").classList.add("small");
      draw();
    };
    img.onerror = () => { canvas.hidden = true; boxText.textContent = "the browser cannot show this file; the server will check it"; };
    img.src = url;
  }

  input.addEventListener("change", () => load(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) load(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    for (const item of e.clipboardData.items) {
      if (item.type.startsWith("image/")) { load(item.getAsFile()); e.preventDefault(); return; }
    }
  });
  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [Math.min(Math.max(e.clientX - r.left, 0), r.width) * scale * canvas.width / r.width,
            Math.min(Math.max(e.clientY - r.top, 0), r.height) * scale * canvas.height / r.height];
  }
  canvas.addEventListener("mousedown", (e) => { dragFrom = point(e); });
  window.addEventListener("mousemove", (e) => {
    if (!dragFrom) return;
    const p = point(e);
    box = [Math.min(dragFrom[0], p[0]), Math.min(dragFrom[1], p[1]), Math.max(dragFrom[0], p[0]), Math.max(dragFrom[1], p[1])];
    draw();
  });
  window.addEventListener("mouseup", () => {
    if (dragFrom && box && (box[2] - box[0] < 4 || box[3] - box[1] < 4)) box = null;
    dragFrom = null; draw();
  });
  document.getElementById("clear-box").addEventListener("click", () => { box = null; draw(); });
  form.addEventListener("submit", (e) => {
    if (!input.files.length) { e.preventDefault(); boxText.textContent = "choose, drop or paste a photo first"; }
  });
}

function setupTimeline() {
  const tl = document.querySelector(".timeline");
  if (!tl) return;
  const start = parseFloat(tl.dataset.start), span = parseFloat(tl.dataset.span);
  tl.querySelectorAll(".seg").forEach((seg) => {
    const a = (parseFloat(seg.dataset.start) - start) / span, b = (parseFloat(seg.dataset.end) - start) / span;
    seg.style.left = (100 * a).toFixed(2) + "%";
    seg.style.width = Math.max(0.8, 100 * (b - a)).toFixed(2) + "%";
  });
}

function framePlayer(video) {
  // Fallback when the browser cannot play the WebM: show the segment's JPEG frames in turn.
  const img = document.createElement("img");
  img.className = "frames";
  video.replaceWith(img);
  let k = 0;
  const next = () => {
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; k += 1; setTimeout(next, 100); };
    probe.onerror = () => { if (k === 0) img.alt = "no video segment available"; };
    probe.src = video.dataset.frames + k + ".jpg";
  };
  next();
}

function setupPlayers() {
  document.querySelectorAll(".sighting .play").forEach((button) => {
    button.addEventListener("click", () => {
      const card = button.closest(".sighting");
      const player = card.querySelector(".player");
      const video = player.querySelector("video");
      player.hidden = false;
      if (!video) return;
      if (!video.src) {
        video.addEventListener("error", () => framePlayer(video), { once: true });
        video.src = video.dataset.src;
      }
      video.currentTime = 0;
      video.play().catch(() => {});
    });
  });
}

function setupCameras() {
  const root = document.getElementById("cameras");
  if (!root) return;
  setInterval(async () => {
    const r = await fetch(root.dataset.refresh, { headers: { Accept: "application/json" } });
    if (r.status === 401) { location.href = "/login?next=/cameras"; return; }
    if (!r.ok) return;
    const data = await r.json();
    for (const c of data.cameras) {
      const card = root.querySelector(`[data-camera="${CSS.escape(c.camera_id)}"]`);
      if (!card) continue;
      const status = card.querySelector(".status");
      status.textContent = c.status; status.className = "status status-" + c.status;
      card.querySelector(".fps").textContent = (c.fps == null ? "-" : c.fps.toFixed(1)) +
        (c.nominal_fps ? ` (source ${c.nominal_fps.toFixed(1)})` : "");
      card.querySelector(".last").textContent = c.last_iso ? c.last_iso.replace("T", " ").replace(/\.\d+Z?$/, "") + ` (#${c.last_frame})` : "-";
      card.querySelector(".tracks").textContent = c.n_tracks;
      const snap = card.querySelector(".snapshot");
      snap.src = snap.src.split("?")[0] + "?t=" + Date.now();
    }
  }, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  setupSearch(); setupTimeline(); setupPlayers(); setupCameras();
});
