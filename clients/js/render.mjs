// Render a clip with the Reframe API from Node 20+, using only the built-in fetch.
// REFRAME_API_KEY=rf_live_... REFRAME_API_URL=http://127.0.0.1:8000 node render.mjs clip.mp4 60 smooth.mp4
import { randomUUID } from "node:crypto";
import { createWriteStream, openAsBlob } from "node:fs";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";

const API = process.env.REFRAME_API_URL ?? "http://127.0.0.1:8000";
const KEY = process.env.REFRAME_API_KEY;
const [file = "clip.mp4", fps = "60", output = "smooth.mp4"] = process.argv.slice(2);

// One API call: JSON in and out, the key in the header, 429s retried after Retry-After,
// and any other error thrown with the server's {"detail"} sentence.
async function api(method, path, body, headers = {}) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(API + path, {
      method,
      headers: {
        Authorization: `Bearer ${KEY}`,
        ...(body ? { "Content-Type": "application/json" } : {}),
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status === 429 && attempt < 5) {
      await sleep(1000 * Number(res.headers.get("Retry-After") ?? 1));
      continue;
    }
    const data = await res.json();
    if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${data.detail}`);
    return data;
  }
}

// 1. Create an upload URL (declaring the size: over the limit is a 413 before any upload).
const video = await openAsBlob(file, { type: "video/mp4" }); // read from disk as it is sent
const presign = await api("POST", "/upload/presign", {
  filename: basename(file),
  content_type: "video/mp4",
  size_bytes: video.size,
});

// 2. Upload straight to storage; the signed URL is the credential, so no API key here.
const put = await fetch(presign.upload_url, {
  method: presign.method,
  headers: presign.headers,
  body: video,
});
if (!put.ok) throw new Error(`upload -> ${put.status}: ${await put.text()}`);

// 3. Probe the upload and price it.
const estimate = await api("POST", "/pricing/estimate-video", {
  r2_key: presign.key,
  target_fps_options: [Number(fps)],
});
const quote = estimate.options[0];
console.log(`price: ${quote.charged_xeconds} xeconds (${quote.band}, ${quote.payment_kind})`);

// 4. Start the render. The Idempotency-Key makes a retried POST return the same job.
const job = await api(
  "POST",
  "/jobs",
  { r2_key: presign.key, project_id: presign.project_id, target_fps: Number(fps) },
  { "Idempotency-Key": randomUUID() },
);

// 5. Poll until it ends.
let result;
for (;;) {
  result = await api("GET", `/jobs/${job.job_id}`);
  const frames = `${result.frames_done ?? 0}/${result.frames_total ?? "?"}`;
  console.log(`status=${result.live_status} frames=${frames} eta=${result.eta_sec ?? "-"}`);
  if (["done", "failed", "cancelled"].includes(result.live_status)) break;
  await sleep(3000);
}
if (result.live_status !== "done") {
  console.error(`render ${result.live_status}: ${result.error}; refunded ${result.refunded_xeconds}`);
  process.exit(1);
}

// 6. Download the output.
const download = await fetch(result.output_url);
if (!download.ok) throw new Error(`download -> ${download.status}`);
await pipeline(Readable.fromWeb(download.body), createWriteStream(output));
console.log(`saved ${output}`);
