// The web app's side of pledgeflow: store an upload through Prisma, sign the webhook, read
// progress. Ids are BigInt in the database; this module takes and returns them as decimal
// strings (exact beyond 2^53, and what JSON and the webhook accept). Money stays Decimal.
import { createHmac } from "node:crypto";

import { PrismaPg } from "@prisma/adapter-pg";

import { Prisma, PrismaClient, UploadStatus } from "./generated/prisma/client.js";
import type { ChunkData } from "./generated/json/chunk-data.js";
import type { UploadErrors } from "./generated/json/upload-errors.js";
import type { UploadStats } from "./generated/json/upload-stats.js";

export type Id = string;
export type { ChunkData, UploadErrors, UploadStats };

/** A Prisma Client on PostgreSQL through node-postgres: no native engine. */
export function connect(databaseUrl: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }) });
}

export interface NewUpload {
  shop: string;
  project: string;
  filename: string;
  headers: string[];
  rows: string[][];
  chunkSize?: number;
}

/** `{headers, rows}` chunks of a parsed CSV, the header row repeated in each. */
export function chunkRows(headers: string[], rows: string[][], chunkSize: number): ChunkData[] {
  const [first, ...rest] = headers;
  if (first === undefined) throw new Error("a CSV upload needs its header row");
  const header: ChunkData["headers"] = [first, ...rest];
  const chunks: ChunkData[] = [];
  for (let start = 0; start < rows.length; start += chunkSize) {
    chunks.push({ headers: header, rows: rows.slice(start, start + chunkSize) });
  }
  return chunks;
}

/**
 * Store an upload and its chunks in one transaction: the project (found or created by shop
 * and name), the `PENDING` upload, and one `PENDING` chunk per slice of rows. Nothing is
 * stored if any of it fails. Counters, timestamps and JSON columns are left to PostgreSQL.
 */
export async function storeUpload(prisma: PrismaClient, upload: NewUpload): Promise<Id> {
  const chunks = chunkRows(upload.headers, upload.rows, upload.chunkSize ?? 10_000);
  return prisma.$transaction(async (tx) => {
    const project = await tx.project.upsert({
      where: { shop_name: { shop: upload.shop, name: upload.project } },
      create: { shop: upload.shop, name: upload.project },
      update: {},
    });
    const stored = await tx.csvUpload.create({
      data: {
        projectId: project.id,
        shop: upload.shop,
        filename: upload.filename,
        status: UploadStatus.PENDING,
      },
    });
    let firstRow = 1;
    await tx.csvUploadChunk.createMany({
      data: chunks.map((chunk, chunkIndex) => {
        const row = {
          uploadId: stored.id,
          chunkIndex,
          data: chunk as unknown as Prisma.InputJsonObject,
          firstRow,
          rowCount: chunk.rows.length,
          status: UploadStatus.PENDING,
        };
        firstRow += chunk.rows.length;
        return row;
      }),
    });
    return stored.id.toString();
  });
}

/** The webhook's headers for `body` sent at `timestamp` (Unix seconds), as DESIGN.md fixes. */
export function signatureHeaders(
  secret: string,
  body: string,
  timestamp: number,
): Record<string, string> {
  const mac = createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(`${timestamp}.${body}`, "utf8")
    .digest("hex");
  return {
    "content-type": "application/json",
    "X-Pledgeflow-Timestamp": String(timestamp),
    "X-Pledgeflow-Signature": `sha256=${mac}`,
  };
}

export interface Queued {
  flow_run_id: string;
  url: string | null;
}

export class WebhookError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`webhook answered ${status} ${code}: ${message}`);
  }
}

/**
 * Ask pledgeflow to process a stored upload. A redelivery answers with the same run, so a
 * failed or timed-out call can simply be sent again; 401, 404 and 422 will not change on retry.
 */
export async function notifyUpload(
  webhookUrl: string,
  secret: string,
  uploadId: Id | bigint,
  options: { shop?: string; maxRejectedFraction?: number } = {},
): Promise<Queued> {
  const body = JSON.stringify({
    upload_id: uploadId.toString(),
    ...(options.shop ? { shop: options.shop } : {}),
    ...(options.maxRejectedFraction !== undefined
      ? { max_rejected_fraction: options.maxRejectedFraction }
      : {}),
  });
  const response = await fetch(new URL("/webhooks/uploads", webhookUrl), {
    method: "POST",
    headers: signatureHeaders(secret, body, Math.floor(Date.now() / 1000)),
    body,
  });
  const answer = (await response.json()) as Queued & { error?: string; message?: string };
  if (response.status !== 202) {
    throw new WebhookError(response.status, answer.error ?? "unknown", answer.message ?? "");
  }
  return answer;
}

export interface Progress {
  id: Id;
  status: UploadStatus;
  platform: string | null;
  totalRows: number;
  totalChunks: number;
  completedChunks: number;
  failedChunks: number;
  importedRows: number;
  rejectedRows: number;
  stats: UploadStats | null;
  errors: UploadErrors | null;
  flowRunId: string | null;
  startedAt: Date | null;
  completedAt: Date | null;
  updatedAt: Date;
}

/** The upload's status and counters, as pledgeflow keeps them while it runs. */
export async function readProgress(
  prisma: PrismaClient,
  uploadId: Id | bigint,
): Promise<Progress> {
  const upload = await prisma.csvUpload.findUniqueOrThrow({
    where: { id: BigInt(uploadId) },
    select: {
      id: true,
      status: true,
      platform: true,
      totalRows: true,
      totalChunks: true,
      completedChunks: true,
      failedChunks: true,
      importedRows: true,
      rejectedRows: true,
      stats: true,
      errors: true,
      flowRunId: true,
      startedAt: true,
      completedAt: true,
      updatedAt: true,
    },
  });
  return {
    ...upload,
    id: upload.id.toString(),
    stats: upload.stats as unknown as UploadStats | null,
    errors: upload.errors as unknown as UploadErrors | null,
  };
}

/** Poll until the upload is COMPLETED or FAILED, or the time is up (then throw). */
export async function waitForUpload(
  prisma: PrismaClient,
  uploadId: Id | bigint,
  { timeoutMs = 300_000, intervalMs = 1_000 } = {},
): Promise<Progress> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const progress = await readProgress(prisma, uploadId);
    if (progress.status === UploadStatus.COMPLETED || progress.status === UploadStatus.FAILED) {
      return progress;
    }
    if (Date.now() > deadline) {
      throw new Error(`upload ${uploadId} still ${progress.status} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A value with every BigInt (the ids) as its decimal string; Decimal and Date stay, and
 * JSON.stringify writes them as strings (their toJSON), so the result always stringifies. */
export type JsonSafe<T> = T extends bigint
  ? string
  : T extends Date | Prisma.Decimal
    ? T
    : T extends (infer U)[]
      ? JsonSafe<U>[]
      : T extends object
        ? { [K in keyof T]: JsonSafe<T[K]> }
        : T;

export function jsonSafe<T>(value: T): JsonSafe<T> {
  if (typeof value === "bigint") return value.toString() as JsonSafe<T>;
  if (value === null || typeof value !== "object") return value as JsonSafe<T>;
  if (value instanceof Date || Prisma.Decimal.isDecimal(value)) return value as JsonSafe<T>;
  if (Array.isArray(value)) return value.map((item) => jsonSafe(item)) as JsonSafe<T>;
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [key, jsonSafe(item)]),
  ) as JsonSafe<T>;
}

/** An upload's pledges with their backer, reward product and survey (with its inventory
 * lines), ids as strings: what a web app lists once the upload has completed. */
export async function readPledges(prisma: PrismaClient, uploadId: Id | bigint, take = 100) {
  const pledges = await prisma.pledge.findMany({
    where: { uploadId: BigInt(uploadId) },
    include: { backer: true, product: true, survey: { include: { inventories: true } } },
    orderBy: { id: "asc" },
    take,
  });
  return jsonSafe(pledges);
}

/** Sum money exactly: Decimal, never floating point. */
export function sumMoney(amounts: Iterable<Prisma.Decimal | null>): Prisma.Decimal {
  let total = new Prisma.Decimal(0);
  for (const amount of amounts) {
    if (amount !== null) total = total.plus(amount);
  }
  return total;
}
