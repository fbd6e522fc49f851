import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { connect } from "node:net";
import { test } from "node:test";
import { listenDual } from "./listener.ts";

async function h2Get(port: number, path: string): Promise<string> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":path": path });
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", () => resolve(body));
      req.on("error", reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

function h1Get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

test("one port answers HTTP/1.1 and cleartext HTTP/2 with the same handler", async () => {
  const listener = await listenDual(
    (req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`${req.httpVersion} ${req.url}`);
    },
    { port: 0, host: "127.0.0.1" },
  );
  try {
    assert.equal(await h1Get(listener.port, "/a"), "1.1 /a");
    assert.equal(await h2Get(listener.port, "/b"), "2.0 /b");
    // The preface may arrive in pieces.
    const raw = connect(listener.port, "127.0.0.1");
    await new Promise((r) => raw.once("connect", r));
    for (const piece of ["G", "ET /c HTTP/1.1\r\n", "Host: x\r\nConnection: close\r\n\r\n"]) {
      raw.write(piece);
      await new Promise((r) => setTimeout(r, 20));
    }
    let reply = "";
    for await (const chunk of raw) reply += String(chunk);
    assert.match(reply, /^HTTP\/1\.1 200/);
    assert.match(reply, /\r\n1\.1 \/c\r\n/);
  } finally {
    await listener.close(1000);
  }
});

test("close waits for requests in flight, refuses new connections, and ends at the grace limit", async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  const listener = await listenDual(
    (_req, res) => {
      void held.then(() => res.end("done"));
    },
    { port: 0, host: "127.0.0.1" },
  );
  const inFlight = h1Get(listener.port, "/slow");
  while (listener.inFlight() === 0) await new Promise((r) => setTimeout(r, 10));
  const closing = listener.close(5000);
  await new Promise((r) => setTimeout(r, 50));
  await assert.rejects(h1Get(listener.port, "/late"));
  release();
  assert.equal(await inFlight, "done");
  await closing;

  // A request that never finishes is cut at the grace limit.
  const stuck = await listenDual(() => {}, { port: 0, host: "127.0.0.1" });
  const never = h1Get(stuck.port, "/never").catch((err: Error) => err);
  while (stuck.inFlight() === 0) await new Promise((r) => setTimeout(r, 10));
  await stuck.close(100);
  assert.ok((await never) instanceof Error);
});
