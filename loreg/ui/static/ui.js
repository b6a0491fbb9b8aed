// loreg UI: optional enhancements. Every page reads fine without this file.
(function () {
  "use strict";
  // Copy buttons: shown only when scripting works.
  document.querySelectorAll("button.copy-btn").forEach(function (btn) {
    btn.hidden = false;
    btn.addEventListener("click", function () {
      var el = document.getElementById(btn.getAttribute("data-copy"));
      if (!el) { return; }
      var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(el.textContent).then(done, function () {});
      } else {
        var range = document.createRange(); range.selectNodeContents(el);
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        try { document.execCommand("copy"); done(); } catch (e) { /* selected; user copies */ }
      }
    });
  });
  // Live job progress: poll the page's JSON twin until the job ends, then reload once.
  var job = document.getElementById("job");
  if (!job || job.getAttribute("data-live") !== "true") { return; }
  var id = job.getAttribute("data-job");
  var bar = document.getElementById("job-progress");
  var pct = document.getElementById("job-percent");
  var msg = document.getElementById("job-message");
  var status = document.getElementById("job-status");
  function tick() {
    fetch("/ui/jobs/" + encodeURIComponent(id) + "/progress.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) { setTimeout(tick, 3000); return; }
        bar.value = d.percent; bar.textContent = d.percent + "%";
        pct.textContent = d.percent + "%";
        if (msg.textContent !== d.message) { msg.textContent = d.message; }
        if (status.textContent !== d.status) {
          status.textContent = d.status; status.className = "badge job-" + d.status;
        }
        if (d.terminal) { window.location.reload(); return; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
