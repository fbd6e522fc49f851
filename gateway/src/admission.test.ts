import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { admitAtMost } from "./admission.ts";

// A real http server on loopback with real sockets: with a limit of 4, ten clients that each send
// a request at once have 4 read while those are being answered, and one more each time one is
// answered; every client gets its answer, in full.

/** Resolves with the whole response once `Content-Length` bytes of body have arrived. */
function ask(socket: Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? Number.NaN);
      if (end >= 0 && text.length >= end + 4 + length) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write(`GET ${path} HTTP/1.1\r\nhost: test\r\n\r\n`);
  });
}

test("at the limit, idle connections wait unread, and each answer lets the next one in", async (t) => {
  const held: { path: string; res: ServerResponse }[] = [];
  let seen = 0;
  const server = createServer((req, res) => {
    seen++;
    held.push({ path: req.url ?? "", res });
  });
  const admission = admitAtMost(server, 4);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  const { port } = server.address() as { port: number };
  const sockets = await Promise.all(
    Array.from(
      { length: 10 },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect(port, "127.0.0.1", () => resolve(s));
          s.once("error", reject);
        }),
    ),
  );
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  const answers = sockets.map((s, i) => ask(s, `/${i}`));
  /** Waits until `check` holds, or fails after 5 s. */
  const until = async (what: string, check: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!check()) {
      assert.ok(Date.now() < deadline, `not within 5 s: ${what} (seen ${seen}, in flight ${admission.inFlight()})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await until("4 requests read", () => seen === 4);
  // The other six have sent theirs: they stay unread while four are being answered.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(seen, 4);
  assert.equal(admission.waiting(), 6);

  const answer = (n: number) => {
    for (const { path, res } of held.splice(0, n)) res.end(`answer to ${path}`);
  };
  const read = () => seen;
  // Each answer lets one more request in, and only one.
  for (let n = 5; n <= 10; n++) {
    answer(1);
    await until(`request ${n} read`, () => read() === n);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(read(), n);
    assert.equal(admission.inFlight(), 4);
  }
  answer(held.length);
  const texts = await Promise.all(answers);
  texts.forEach((text, i) => {
    assert.match(text, /^HTTP\/1\.1 200 OK/);
    assert.ok(text.endsWith(`answer to /${i}`), text);
  });
  await until("nothing in flight", () => admission.inFlight() === 0);
  // The idle connections are all read again, a free slot each.
  await until("no connection waiting", () => admission.waiting() === 0);
});
