import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** Runs a load generator to its end: what it printed (stdout, then stderr), or why it failed. */
export async function run(file: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await execFileP(file, args, { maxBuffer: 1 << 26 }).catch(
    (err: { code?: number; stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`${file} ${args.join(" ")} exited ${err.code}:\n${err.stdout ?? ""}${err.stderr ?? err.message}`);
    },
  );
  return stdout + stderr;
}
