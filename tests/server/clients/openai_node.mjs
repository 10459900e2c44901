// The official openai Node SDK against imagerouter: prints one JSON object of what it saw.
// Usage: IMAGEROUTER_BASE_URL=http://127.0.0.1:PORT/v1 IMAGEROUTER_KEY=ir_... node openai_node.mjs
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.IMAGEROUTER_BASE_URL,
  apiKey: process.env.IMAGEROUTER_KEY,
  maxRetries: 0,
});

const { data: gpt, response } = await client.images
  .generate({ model: "gpt-image-1", prompt: "a lighthouse", size: "1024x1024", quality: "low" })
  .withResponse();
const png = Buffer.from(gpt.data[0].b64_json, "base64");

const dalle = await client.images.generate({ model: "dall-e-3", prompt: "a red fox" });

let refused = null;
try {
  await client.images.generate({ model: "gpt-image-2", prompt: "x", response_format: "url" });
} catch (error) {
  refused = { status: error.status, code: error.code, param: error.param, type: error.type };
}

console.log(
  JSON.stringify({
    png: png.subarray(0, 8).toString("hex"),
    url: gpt.data[0].url ?? null,
    usage: gpt.usage,
    size: gpt.size,
    quality: gpt.quality,
    output_format: gpt.output_format,
    background: gpt.background,
    job_id: response.headers.get("x-imagerouter-job-id"),
    dalle_url: dalle.data[0].url,
    dalle_revised_prompt: dalle.data[0].revised_prompt,
    refused,
  }),
);
