// Independent checks of Keyward's PSBT signing with bitcoinjs-lib (+ @bitcoinerlab/secp256k1).
// Usage:
//   node bitcoin-check.mjs build <input.json>   input: {address, to, kind}
//     prints {psbt}: a regtest PSBT spending two outputs of `address` to `to` with change
//   node bitcoin-check.mjs verify <input.json>  input: {psbt, kind}
//     checks every input's signatures against bitcoinjs's own sighash and the input's script,
//     finalizes, extracts, and prints {valid, txid, hex, vsize, outputs}
import { readFileSync } from "node:fs";
import * as bitcoin from "bitcoinjs-lib";
import ecc from "@bitcoinerlab/secp256k1";

bitcoin.initEccLib(ecc);
const network = bitcoin.networks.regtest;
const [mode, file] = process.argv.slice(2);
const input = JSON.parse(readFileSync(file, "utf8"));

if (mode === "build") {
  const script = bitcoin.address.toOutputScript(input.address, network);
  const psbt = new bitcoin.Psbt({ network });
  const amounts = [70_000, 45_000];
  amounts.forEach((value, i) => {
    const inp = {
      hash: Buffer.alloc(32, i + 7),
      index: i,
      witnessUtxo: { script, value },
    };
    if (input.kind === "p2tr") {
      // The x-only internal key: the output key tweaked back is checked by bitcoinjs later.
      inp.tapInternalKey = Buffer.from(input.internal_key, "hex");
    }
    psbt.addInput(inp);
  });
  psbt.addOutput({ address: input.to, value: 100_000 });
  psbt.addOutput({ address: input.address, value: 13_500 });
  console.log(JSON.stringify({ psbt: psbt.toBase64() }));
} else if (mode === "verify") {
  const psbt = bitcoin.Psbt.fromBase64(input.psbt, { network });
  const validator = (pubkey, msghash, signature) =>
    input.kind === "p2tr"
      ? ecc.verifySchnorr(msghash, pubkey, signature)
      : ecc.verify(msghash, pubkey, signature);
  const valid = psbt.data.inputs.map((_, i) => psbt.validateSignaturesOfInput(i, validator));
  psbt.finalizeAllInputs();
  const tx = psbt.extractTransaction();
  console.log(
    JSON.stringify({
      valid,
      txid: tx.getId(),
      hex: tx.toHex(),
      vsize: tx.virtualSize(),
      witness_items: tx.ins.map((i) => i.witness.length),
      outputs: tx.outs.map((o) => ({
        address: bitcoin.address.fromOutputScript(o.script, network),
        value: o.value,
      })),
    }),
  );
} else {
  throw new Error(`unknown mode ${mode}`);
}
