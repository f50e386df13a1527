// The page at /: pick a model, draw or upload an image, see the probabilities and what
// the model received. Talks to the API only: GET /models, GET /models/{dataset}/{arch},
// POST /predict?include_input=true. No library, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const DATASET_ORDER = ["mnist", "fashion_mnist", "cifar10"];
const DIGIT_DATASETS = new Set(["mnist"]);
const PREDICT_DELAY_MS = 150; // debounce while drawing: at most one request per pause
const INK_WIDTH = 20; // pixels on the 280x280 canvas: a marker stroke, as MNIST's are

let models = [];
let current = null; // the selected /models entry
let lastImage = null; // the Blob last classified (drawing or upload)
let requestCount = 0; // answers to older requests than the newest are dropped
let strokes = [];
let drawing = null;
let predictTimer = null;

const percent = (value) => (value == null ? "n/a" : `${(100 * value).toFixed(2)}%`);
const rank = (dataset) => {
  const index = DATASET_ORDER.indexOf(dataset);
  return index < 0 ? DATASET_ORDER.length : index;
};

/** The message of an API error answer, whatever its protocol's format. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    const error = body.error ?? body.detail;
    if (typeof error === "string") return error;
    if (error && error.message) return error.message;
  } catch (ignored) {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("top").textContent = "";
  $("bars").replaceChildren();
  $("seen").hidden = true;
  $("why").hidden = true;
}

async function loadModels() {
  let response;
  try {
    response = await fetch("/models");
  } catch (error) {
    showError(`the service cannot be reached: ${error.message}`);
    return;
  }
  if (!response.ok) {
    showError(await errorMessage(response));
    return;
  }
  models = (await response.json()).models;
  const select = $("model");
  select.replaceChildren();
  const datasets = [...new Set(models.map((model) => model.dataset))].sort((a, b) => rank(a) - rank(b));
  for (const dataset of datasets) {
    const group = document.createElement("optgroup");
    group.label = dataset;
    const members = models
      .filter((model) => model.dataset === dataset)
      .sort((a, b) => b.default - a.default || (b.test_accuracy ?? 0) - (a.test_accuracy ?? 0));
    for (const model of members) {
      const option = document.createElement("option");
      option.value = model.model;
      option.textContent = `${model.arch}: ${percent(model.test_accuracy)} test accuracy${model.default ? " (default)" : ""}`;
      group.append(option);
    }
    select.append(group);
  }
  const asked = new URLSearchParams(location.search).get("model");
  const first = models.find((model) => model.model === asked) ?? models.find((model) => model.dataset === datasets[0] && model.default) ?? models[0];
  select.disabled = models.length === 0;
  if (first) {
    select.value = first.model;
    selectModel(first.model);
  } else {
    showError("no model is loaded");
  }
}

function selectModel(id) {
  current = models.find((model) => model.model === id);
  const [dataset, arch] = id.split("/");
  $("model-link").href = `#/models/${dataset}/${arch}`;
  $("model-info").textContent =
    `${current.dataset}, input ${current.input_shape.join("x")}, ${current.parameter_count?.toLocaleString() ?? "?"} parameters, ` +
    `classes: ${current.class_names.join(", ")}`;
  $("draw-panel").hidden = !DIGIT_DATASETS.has(current.dataset);
  if (lastImage) predict(lastImage);
}

async function predict(blob) {
  lastImage = blob;
  const count = ++requestCount;
  const form = new FormData();
  form.append("image", blob, blob.name ?? "image.png");
  let response;
  try {
    response = await fetch(`/predict?model=${encodeURIComponent(current.model)}&include_input=true`, {
      method: "POST",
      body: form,
    });
  } catch (error) {
    if (count === requestCount) showError(`the service cannot be reached: ${error.message}`);
    return;
  }
  const answer = response.ok ? await response.json() : await errorMessage(response);
  if (count !== requestCount) return;
  if (response.ok) render(answer);
  else showError(answer);
}

// Why: an attribution map from POST /explain over the model's input, for the predicted
// class or the class clicked in the bars.
let explainCount = 0;

async function explainClass(classIndex) {
  if (!lastImage) return;
  const count = ++explainCount;
  const form = new FormData();
  form.append("image", lastImage, lastImage.name ?? "image.png");
  $("why-caption").textContent = "Computing…";
  $("why-error").hidden = true;
  let response;
  try {
    response = await fetch(
      `/explain?model=${encodeURIComponent(current.model)}&class_index=${classIndex}`,
      { method: "POST", body: form },
    );
  } catch (error) {
    if (count === explainCount) showWhyError(`the service cannot be reached: ${error.message}`);
    return;
  }
  const answer = response.ok ? await response.json() : await errorMessage(response);
  if (count !== explainCount) return;
  if (!response.ok) {
    showWhyError(answer);
    return;
  }
  $("why-overlay").src = `data:image/png;base64,${answer.overlay}`;
  const how = answer.method === "occlusion" ? "occlusion" : "integrated gradients";
  $("why-caption").textContent =
    `Red raised the probability of ${answer.explained_class_name} (${percent(answer.probabilities[answer.explained_class_index].probability)}), ` +
    `blue lowered it (${how}).`;
  $("why-figure").hidden = false;
}

function showWhyError(message) {
  $("why-error").textContent = message;
  $("why-error").hidden = false;
  $("why-caption").textContent = "";
}

function render(result) {
  $("error").hidden = true;
  $("why").hidden = false;
  $("why-figure").hidden = true;
  $("why-error").hidden = true;
  explainCount++;
  $("why-button").onclick = () => explainClass(result.class_index);
  $("top").textContent = `${result.class_name} (${percent(result.confidence)} sure)`;
  const rows = result.probabilities.map((item) => {
    const row = document.createElement("li");
    row.className = item.class_index === result.class_index ? "best" : "";
    row.tabIndex = 0;
    row.title = `Why ${item.class_name}?`;
    row.addEventListener("click", () => explainClass(item.class_index));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        explainClass(item.class_index);
      }
    });
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = item.class_name;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * item.probability).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(item.probability);
    row.append(label, bar, value);
    return row;
  });
  $("bars").replaceChildren(...rows);
  if (result.model_input) {
    $("model-input").src = `data:image/png;base64,${result.model_input}`;
    const [height, width] = current.input_shape;
    $("seen-size").textContent = `${width}x${height} pixels, enlarged`;
    $("seen").hidden = false;
  }
}

// Drawing: pointer events cover the mouse, pens and touch alike.
function paint() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.lineWidth = INK_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  for (const stroke of strokes) {
    context.beginPath();
    context.moveTo(stroke[0].x, stroke[0].y);
    if (stroke.length === 1) {
      context.arc(stroke[0].x, stroke[0].y, INK_WIDTH / 2, 0, 2 * Math.PI);
      context.fill();
      continue;
    }
    for (const point of stroke.slice(1)) context.lineTo(point.x, point.y);
    context.stroke();
  }
}

function point(event) {
  const canvas = $("canvas");
  const box = canvas.getBoundingClientRect();
  return { x: ((event.clientX - box.left) * canvas.width) / box.width, y: ((event.clientY - box.top) * canvas.height) / box.height };
}

function drawingChanged(delay) {
  clearTimeout(predictTimer);
  if (strokes.length === 0) {
    lastImage = null;
    requestCount++;
    $("top").textContent = "Draw or upload an image.";
    $("bars").replaceChildren();
    $("seen").hidden = true;
    $("error").hidden = true;
    $("why").hidden = true;
    explainCount++;
    return;
  }
  predictTimer = setTimeout(() => $("canvas").toBlob((blob) => blob && predict(blob), "image/png"), delay);
}

function setUpCanvas() {
  const canvas = $("canvas");
  paint();
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = [point(event)];
    strokes.push(drawing);
    $("upload").hidden = true;
    paint();
    drawingChanged(PREDICT_DELAY_MS);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    drawing.push(point(event));
    paint();
    drawingChanged(PREDICT_DELAY_MS);
  });
  const end = () => {
    if (!drawing) return;
    drawing = null;
    drawingChanged(0);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  const undo = () => {
    strokes.pop();
    paint();
    drawingChanged(0);
  };
  const clear = () => {
    strokes = [];
    paint();
    drawingChanged(0);
  };
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  canvas.addEventListener("keydown", (event) => {
    if (event.key === "Backspace" || event.key === "Delete") clear();
    else if (event.key.toLowerCase() === "z" && (event.ctrlKey || event.metaKey)) undo();
  });
}

function useFile(file) {
  if (!file) return;
  strokes = [];
  paint();
  const preview = $("upload");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  predict(file);
}

function setUpUploads() {
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])][0];
    if (file) {
      event.preventDefault();
      useFile(file);
    }
  });
}

// The page of one model: #/models/<dataset>/<arch>
async function showDetails(dataset, arch) {
  $("details-title").textContent = `${dataset}/${arch}`;
  $("details-facts").replaceChildren();
  $("details-classes").tBodies[0].replaceChildren();
  $("details-reports").replaceChildren();
  $("details-error").hidden = true;
  const response = await fetch(`/models/${encodeURIComponent(dataset)}/${encodeURIComponent(arch)}`);
  if (!response.ok) {
    $("details-error").textContent = await errorMessage(response);
    $("details-error").hidden = false;
    return;
  }
  const detail = await response.json();
  const meta = detail.metadata;
  const metrics = meta.metrics ?? {};
  const recipe = meta.recipe ?? {};
  const facts = [
    ["Architecture", meta.arch],
    ["Version", `${detail.version} (of ${detail.versions.join(", ")})`],
    ["Parameters", meta.parameter_count?.toLocaleString()],
    ["Test accuracy", percent(metrics.test?.accuracy)],
    ["Validation accuracy", percent(metrics.val?.accuracy)],
    ["Training accuracy", percent(metrics.train?.accuracy)],
    ["Epochs", meta.epochs_run && `${meta.epochs_run} run, best ${meta.best_epoch}`],
    ["Training time", meta.training_seconds && `${Math.round(meta.training_seconds)} s (${meta.seconds_per_epoch ?? "?"} s per epoch)`],
    ["Recipe", Object.entries(recipe).map(([key, value]) => `${key} ${JSON.stringify(value)}`).join(", ")],
    ["Members", meta.members && meta.members.map((member) => `${member.dataset}/${member.arch} v${member.version}`).join(", ")],
    ["Preprocessing", meta.preprocessing],
    ["Input", `${meta.input_shape.join("x")} ${meta.input_dtype} in [${meta.input_range.join(", ")}]`],
    ["Trained", meta.created_at],
    ["Command", meta.command],
  ];
  for (const [name, value] of facts) {
    if (value == null || value === "") continue;
    const term = document.createElement("dt");
    term.textContent = name;
    const description = document.createElement("dd");
    description.textContent = value;
    $("details-facts").append(term, description);
  }
  for (const item of meta.per_class ?? []) {
    const row = document.createElement("tr");
    for (const text of [item.class_name, percent(item.precision), percent(item.recall)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    $("details-classes").tBodies[0].append(row);
  }
  for (const url of detail.report_urls) {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    const name = url.split("/report/")[1].split(".png")[0];
    image.src = url;
    image.alt = `${name.replace("_", " ")} of ${dataset}/${arch}`;
    const caption = document.createElement("figcaption");
    caption.textContent = name.replace("_", " ");
    figure.append(image, caption);
    $("details-reports").append(figure);
  }
}

function route() {
  const match = location.hash.match(/^#\/models\/([^/]+)\/([^/]+)$/);
  $("try").hidden = Boolean(match);
  $("details").hidden = !match;
  if (match) showDetails(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCanvas();
  setUpUploads();
  $("model").addEventListener("change", (event) => selectModel(event.target.value));
  window.addEventListener("hashchange", route);
  route();
  loadModels();
});
