// Progressive enhancement only: every page works without this file.
"use strict";
document.documentElement.classList.add("js");

// "select all" checkboxes tick every checkbox of their form
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!box.classList || !box.classList.contains("select-all")) return;
  for (const other of box.form.querySelectorAll('input[type="checkbox"]')) {
    if (other !== box && other.name) other.checked = box.checked;
  }
});

// the overview's numbers refresh from the JSON API
const stats = document.querySelector("[data-refresh]");
if (stats) {
  const formats = {
    percent: (v) => (v === null ? "—" : (v * 100).toFixed(1) + "%"),
    time: (v) => v.replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC"),
  };
  const refresh = async () => {
    const response = await fetch(stats.dataset.refresh, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    for (const row of data.by_status) data["status." + row.status] = row.sims;
    for (const node of document.querySelectorAll("[data-stat]")) {
      const key = node.dataset.stat;
      if (!(key in data)) continue;
      const format = formats[node.dataset.format || (key === "as_of" ? "time" : "")];
      node.textContent = format ? format(data[key]) : String(data[key]);
    }
  };
  setInterval(() => refresh().catch(() => {}), 10000);
}
