// The ceiling of any route on this machine: Fastify answering a constant, nothing else.
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.get("/", async () => ({ message: "Welcome to the SUSTech Merch Store!" }));
await app.listen({ port: Number(process.env.PORT ?? 0), host: "127.0.0.1" });
console.log(`listening ${(app.server.address() as { port: number }).port}`);
process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));
