import { create, type DescFile, type DescService, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "@merch/gen/grpc/health/v1/health_pb";
import * as v1 from "@merch/gen/grpc/reflection/v1/reflection_pb";
import * as v1alpha from "@merch/gen/grpc/reflection/v1alpha/reflection_pb";

// v1 and v1alpha messages have the same fields, so one answer serves both.
type Answer = MessageInitShape<typeof v1.ServerReflectionResponseSchema>["messageResponse"];
type Question = v1.ServerReflectionRequest["messageRequest"];

/**
 * gRPC server reflection (v1 and v1alpha), so grpcurl, buf curl and Postman can call the
 * services without local proto files. Files are answered with all their dependencies, as
 * grpcurl expects.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dep of file.dependencies) addFile(dep);
    for (const m of file.messages) symbols.set(m.typeName, file);
    for (const e of file.enums) symbols.set(e.typeName, file);
    for (const s of file.services) {
      symbols.set(s.typeName, file);
      for (const method of s.methods) symbols.set(`${s.typeName}.${method.name}`, file);
    }
    // Nested messages and enums are symbols too.
    const nest = (messages: DescFile["messages"]) => {
      for (const m of messages) {
        symbols.set(m.typeName, file);
        for (const e of m.nestedEnums) symbols.set(e.typeName, file);
        nest(m.nestedMessages);
      }
    };
    nest(file.messages);
  };
  const served = [...services, Health, v1.ServerReflection, v1alpha.ServerReflection];
  for (const service of served) addFile(service.file);
  const names = served.map((s) => s.typeName);

  const withDependencies = (file: DescFile): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const walk = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      for (const dep of f.dependencies) walk(dep);
    };
    walk(file);
    return out;
  };
  const notFound = (what: string): Answer => ({
    case: "errorResponse",
    value: { errorCode: 5, errorMessage: `${what} not found` },
  });

  const answer = (q: Question): Answer => {
    switch (q.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: names.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = files.get(q.value);
        return file
          ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } }
          : notFound(`file ${q.value}`);
      }
      case "fileContainingSymbol": {
        const file = symbols.get(q.value.replace(/^\./, ""));
        return file
          ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } }
          : notFound(`symbol ${q.value}`);
      }
      case "allExtensionNumbersOfType":
        // Our protos declare no extensions; an empty list is the truthful answer for known types.
        return symbols.has(q.value)
          ? { case: "allExtensionNumbersResponse", value: { baseTypeName: q.value, extensionNumber: [] } }
          : notFound(`type ${q.value}`);
      case "fileContainingExtension":
        return notFound(`extension ${q.value.containingType}(${q.value.extensionNumber})`);
      default:
        return { case: "errorResponse", value: { errorCode: 3, errorMessage: "empty reflection request" } };
    }
  };

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req.messageRequest),
        });
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const original = create(v1alpha.ServerReflectionRequestSchema, req);
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: original,
          messageResponse: answer(req.messageRequest as Question) as MessageInitShape<
            typeof v1alpha.ServerReflectionResponseSchema
          >["messageResponse"],
        });
      }
    },
  });
}
