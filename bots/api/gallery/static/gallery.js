// The job page follows its job's events (Server-Sent Events) while it runs: place in the queue, the step and
// the latest preview (fetched at each progress event); when the job ends the page reloads to show its images.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const job = document.getElementById("job");
  if (!job || !job.dataset.events) return;
  const status = document.getElementById("status");
  const bar = document.getElementById("progress");
  const step = document.getElementById("step");
  const preview = document.getElementById("preview");
  const source = new EventSource(job.dataset.events);
  source.addEventListener("queued", (e) => {
    const data = JSON.parse(e.data);
    status.textContent = data.position ? `queued (#${data.position})` : "queued";
  });
  source.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    status.textContent = "running";
    job.dataset.status = "running";
    bar.max = data.total;
    bar.value = data.step;
    step.textContent = `step ${data.step} of ${data.total}`;
    preview.src = `${job.dataset.preview}?step=${data.step}`;
  });
  preview.addEventListener("load", () => { preview.hidden = false; });
  preview.addEventListener("error", () => { preview.hidden = true; });
  source.addEventListener("end", (e) => {
    const data = JSON.parse(e.data);
    source.close();
    status.textContent = data.status;
    job.dataset.status = data.status;
    // Show the last preview before the page turns into the finished job.
    const reload = () => window.location.reload();
    if (preview.getAttribute("src") && !preview.complete) {
      preview.addEventListener("load", reload);
      preview.addEventListener("error", reload);
    } else {
      reload();
    }
  });
});
