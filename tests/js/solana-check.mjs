// Independent checks of Keyward's Solana signing with @solana/web3.js and tweetnacl.
// Usage:
//   node solana-check.mjs build <input.json>   input: {address, to, lamports}
//     prints {message}: a legacy transfer transaction's message (base64) paid by `address`
//   node solana-check.mjs verify <input.json>  input: {transaction, address, text,
//                                                     signed_message, message_signature}
//     checks the signed transaction with web3.js (verifySignatures) and decodes its transfer;
//     rebuilds the off-chain message bytes and checks their signature with nacl
import { readFileSync } from "node:fs";
import {
  PublicKey,
  SystemInstruction,
  SystemProgram,
  Transaction,
} from "@solana/web3.js";
import nacl from "tweetnacl";

const [mode, file] = process.argv.slice(2);
const input = JSON.parse(readFileSync(file, "utf8"));

if (mode === "build") {
  const payer = new PublicKey(input.address);
  const tx = new Transaction({
    feePayer: payer,
    recentBlockhash: new PublicKey(Buffer.alloc(32, 3)).toBase58(),
  }).add(
    SystemProgram.transfer({
      fromPubkey: payer,
      toPubkey: new PublicKey(input.to),
      lamports: input.lamports,
    }),
  );
  console.log(JSON.stringify({ message: tx.serializeMessage().toString("base64") }));
} else if (mode === "verify") {
  const tx = Transaction.from(Buffer.from(input.transaction, "base64"));
  const transfer = SystemInstruction.decodeTransfer(tx.instructions[0]);
  const text = Buffer.from(input.text, "utf8");
  const len = Buffer.alloc(2);
  len.writeUInt16LE(text.length);
  // Off-chain message v0: signing domain, header version, format (0: restricted ASCII), length.
  const expected = Buffer.concat([
    Buffer.from([0xff]),
    Buffer.from("solana offchain"),
    Buffer.from([0, 0]),
    len,
    text,
  ]);
  const signed = Buffer.from(input.signed_message, "base64");
  const pubkey = new PublicKey(input.address).toBytes();
  console.log(
    JSON.stringify({
      verified: tx.verifySignatures(),
      fee_payer: tx.feePayer.toBase58(),
      signer: tx.signatures[0].publicKey.toBase58(),
      from: transfer.fromPubkey.toBase58(),
      to: transfer.toPubkey.toBase58(),
      lamports: Number(transfer.lamports),
      offchain_bytes_match: expected.equals(signed),
      offchain_verified: nacl.sign.detached.verify(
        expected,
        Buffer.from(input.message_signature, "base64"),
        pubkey,
      ),
    }),
  );
} else {
  throw new Error(`unknown mode ${mode}`);
}
