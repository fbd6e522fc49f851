// Preloaded into a service to print every garbage collection (--trace-gc may not be given in
// NODE_OPTIONS, but V8 takes it at run time):
//   npm run bench -- --env gateway:NODE_OPTIONS=--import=./bench/trace-gc.ts --logs /tmp/bench-logs
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--trace-gc");
