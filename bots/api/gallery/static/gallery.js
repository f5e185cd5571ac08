// The job page follows its job's events (Server-Sent Events) while it runs: place in the queue, the step and
// a preview when the stream has one; when the job ends the page reloads to show its images.
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
    if (data.preview) {
      preview.src = data.preview;
      preview.hidden = false;
    }
  });
  source.addEventListener("end", (e) => {
    const data = JSON.parse(e.data);
    source.close();
    status.textContent = data.status;
    job.dataset.status = data.status;
    window.location.reload();
  });
});
