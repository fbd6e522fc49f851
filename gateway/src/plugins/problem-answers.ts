import { ErrorReason } from "@merch/kit";
import type { FastifyError, FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { boundedJsonParser } from "../limits.ts";
import { answerForError, type FieldError, problem, sendProblem } from "../problems.ts";
import { fieldErrors, validatorCompiler } from "../validation.ts";

// How the gateway reads request bodies and answers what it refuses: JSON bodies only, validated
// with the REST API's rules, and every refusal (a failed validation, a thrown error, a path with
// no route) as problem details.

const plugin: FastifyPluginAsync = async (app) => {
  app.setValidatorCompiler(validatorCompiler());
  // JSON is the only body the REST API takes; anything else is 415, not a string to validate.
  // (connect-fastify brings its own parsers for its routes: shop-service.ts.)
  app.removeAllContentTypeParsers();
  boundedJsonParser(app);
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      const errors: FieldError[] = fieldErrors(
        err.validation as Parameters<typeof fieldErrors>[0],
        err.validationContext,
      );
      const detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
      return sendProblem(reply, { problem: problem(ErrorReason.VALIDATION_FAILED, detail, { errors }), headers: {} });
    }
    // Fastify closes the connection after a body it stopped reading part way. Closing while the
    // client is still sending makes the kernel reset the connection, and the reset can destroy the
    // 413 before the client has read it (CI saw it). Node reads and drops the rest instead, within
    // the request timeout, as it does for a body refused from its declared length (limits.ts).
    if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") reply.removeHeader("connection");
    const answer = answerForError(err);
    if (answer.problem.status >= 500) req.log.error({ err, requestId: req.id }, "request failed");
    return sendProblem(reply, answer);
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, {
      problem: problem(ErrorReason.NOT_FOUND, `no route for ${req.method} ${req.url.split("?")[0]}`),
      headers: {},
    }),
  );
};

export const problemAnswers = fp(plugin, { name: "problem-answers" });
