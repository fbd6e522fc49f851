import assert from "node:assert/strict";
import { createServer, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { admitAtMost } from "./admission.ts";

// A real http server on loopback with real sockets: with a limit of 4, ten clients that each send
// a request at once have 4 read while those are being answered, and one more each time one is
// answered; every client gets its answer, in full. And the gate in front of the server: a
// connection is set up by the server (a parser) only once it sends something, and past the mark
// of attached connections an idle one is detached after its answer, its keep-alive kept.

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

/** Opens `n` client connections to `port`, each destroyed when the test ends. */
async function openClients(t: { after(fn: () => unknown): void }, port: number, n: number): Promise<Socket[]> {
  const sockets = await Promise.all(
    Array.from(
      { length: n },
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
  return sockets;
}

for (const maxAttached of [1000, 0]) {
  test(`at the limit, idle connections wait unread, and each answer lets the next one in (${maxAttached} attached)`, async (t) => {
    const held: { path: string; res: ServerResponse }[] = [];
    let seen = 0;
    const server = createServer((req, res) => {
      seen++;
      held.push({ path: req.url ?? "", res });
    });
    const admission = admitAtMost(server, { maxInFlight: 4, maxAttached });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => server.close());
    const { port } = server.address() as { port: number };
    const sockets = await openClients(t, port, 10);
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
}

/** Waits until `check` holds, or fails after 5 s saying `what`. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `not within 5 s: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The server's side of a connection, as Node's http server leaves it: its parser while it holds it. */
const parserOf = (socket: Socket) => (socket as unknown as { parser?: object | null }).parser ?? null;

/** An http server answering every request at once, behind the gate, with the sockets it accepted. */
async function gatedServer(t: { after(fn: () => unknown): void }, maxAttached: number) {
  const accepted: Socket[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end(`answer to ${req.url}`));
  });
  const admission = admitAtMost(server, { maxInFlight: 256, maxAttached });
  server.on("connection", (socket: Socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as { port: number };
  const open = (n: number) => openClients(t, port, n);
  return { server, admission, accepted, open };
}

test("a new connection is handed to the http server only when it sends its first bytes", async (t) => {
  const { server, admission, accepted, open } = await gatedServer(t, 1000);
  const sockets = await open(5);
  await until("5 connections accepted", () => accepted.length === 5);
  // Accepted, but no parser: the server has not set them up.
  assert.deepEqual(
    accepted.map((s) => parserOf(s)),
    [null, null, null, null, null],
  );
  assert.equal(admission.parked(), 5);
  assert.equal(admission.attached(), 0);

  const text = await ask(sockets[2] as Socket, "/first");
  assert.match(text, /^HTTP\/1\.1 200 OK/);
  assert.ok(text.endsWith("answer to /first"), text);
  assert.equal(admission.attached(), 1);
  assert.equal(admission.parked(), 4);
  assert.equal(accepted.filter((s) => parserOf(s) !== null).length, 1);
  // Below the mark it stays attached, kept alive, and answers again on the same connection.
  const again = await ask(sockets[2] as Socket, "/again");
  assert.ok(again.endsWith("answer to /again"), again);
  assert.doesNotMatch(again, /connection: close/i);
  assert.equal(admission.attached(), 1);
  await new Promise<void>((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(assert.equal(n, 5)))),
  );
});

test("past the mark, idle connections are detached after their answer and keep their keep-alive", async (t) => {
  const { admission, accepted, open } = await gatedServer(t, 2);
  const sockets = await open(6);
  const first = await Promise.all(sockets.map((s, i) => ask(s, `/one/${i}`)));
  first.forEach((text, i) => {
    assert.match(text, /^HTTP\/1\.1 200 OK/);
    assert.doesNotMatch(text, /connection: close/i);
    assert.ok(text.endsWith(`answer to /one/${i}`), text);
  });
  // Each answer past the mark detached its connection: two keep their parser, four are bare.
  await until("all answered and detached", () => admission.inFlight() === 0 && admission.parked() === 4);
  assert.equal(admission.attached(), 2);
  assert.equal(accepted.filter((s) => parserOf(s) !== null).length, 2);
  assert.ok(sockets.every((s) => !s.destroyed));

  // Every connection is asked again, twice, on the connection it had: each is set up anew when
  // its request arrives, and no request is lost.
  for (const round of ["two", "three"]) {
    const texts = await Promise.all(sockets.map((s, i) => ask(s, `/${round}/${i}`)));
    texts.forEach((text, i) => {
      assert.ok(text.endsWith(`answer to /${round}/${i}`), text);
    });
  }
  assert.equal(accepted.length, 6);
  await until("two attached again", () => admission.inFlight() === 0 && admission.attached() === 2);
});

test("a connection with part of its next request already read is not detached, and that request is answered", async (t) => {
  const { admission, accepted, open } = await gatedServer(t, 0);
  const [socket] = await open(1);
  assert.ok(socket);
  // The first request whole and the start of the second in one write: the parser holds the
  // start of the second when the first is answered.
  let text = "";
  socket.on("data", (chunk: Buffer) => {
    text += chunk.toString("latin1");
  });
  socket.write("GET /a HTTP/1.1\r\nhost: test\r\n\r\nGET /b HTTP/1.1\r\nho");
  await until("the first answer", () => text.includes("answer to /a"));
  await until("the first request over", () => admission.inFlight() === 0);
  assert.equal(admission.attached(), 1, "detached with part of a request in its parser");
  socket.write("st: test\r\n\r\n");
  await until("the second answer", () => text.includes("answer to /b"));
  assert.equal((text.match(/HTTP\/1\.1 200 OK/g) ?? []).length, 2, text);
  // Answered whole, it is detached now.
  await until("detached after the second answer", () => admission.attached() === 0 && admission.parked() === 1);
  assert.equal(parserOf(accepted[0] as Socket), null);
});

test("closing the server closes the connections it does not hold", async (t) => {
  const { server, admission, open } = await gatedServer(t, 0);
  const sockets = await open(3);
  await ask(sockets[0] as Socket, "/x");
  await until("all parked", () => admission.parked() === 3);
  const closed = Promise.all(sockets.map((s) => new Promise((resolve) => s.once("close", resolve))));
  // Without this, close would wait for the idle connections' timeouts.
  const serverClosed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("the server did not close within 5 s")), 5000);
  });
  try {
    await Promise.race([Promise.all([closed, serverClosed]), late]);
  } finally {
    clearTimeout(timer);
  }
});

test("a parked connection left silent is closed at the server's timeouts, new or detached", async (t) => {
  const { server, admission, open } = await gatedServer(t, 0);
  // The connection timeout for a new connection, the keep-alive timeout (and its buffer) after
  // an answer, as Node's server would.
  server.timeout = 1000;
  server.keepAliveTimeout = 300;
  server.keepAliveTimeoutBuffer = 200;
  const [silent, answered] = await open(2);
  assert.ok(silent && answered);
  assert.ok((await ask(answered, "/x")).endsWith("answer to /x"));
  await until("both parked", () => admission.parked() === 2);
  const closed = (s: Socket) => new Promise((resolve) => (s.closed ? resolve(true) : s.once("close", resolve)));
  await Promise.race([
    Promise.all([closed(silent), closed(answered)]),
    new Promise((_, reject) => setTimeout(() => reject(new Error("not closed within 5 s")), 5000).unref()),
  ]);
  await until("none parked", () => admission.parked() === 0);
});
