// Independent checks of Keyward's Ethereum signatures with ethers v6.
// Usage: node ethereum-check.mjs <input.json>
// Input: {url, token, address, messages: [{message_hex, signature}], txs: [raw hex],
//         typed: [{typed_data, signature, hash}]}
// Prints one JSON object with what ethers recovered, parsed and hashed, and the results of
// using Keyward's /rpc/ethereum as a remote signer through JsonRpcProvider/JsonRpcSigner.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = {};

out.messages = input.messages.map((m) =>
  ethers.verifyMessage(ethers.getBytes(m.message_hex), m.signature),
);

const withoutDomain = (types) => {
  const t = { ...types };
  delete t.EIP712Domain;
  return t;
};
out.typed = input.typed.map((t) => {
  const d = t.typed_data;
  const types = withoutDomain(d.types);
  return {
    hash: ethers.TypedDataEncoder.hash(d.domain, types, d.message),
    signer: ethers.verifyTypedData(d.domain, types, d.message, t.signature),
  };
});

const parsed = (raw) => {
  const tx = ethers.Transaction.from(raw);
  return {
    type: tx.type,
    from: tx.from,
    to: tx.to,
    value: tx.value.toString(),
    chainId: tx.chainId.toString(),
    nonce: tx.nonce,
    gasLimit: tx.gasLimit.toString(),
    data: tx.data,
    hash: tx.hash,
    accessList: (tx.accessList ?? []).map((e) => e.address),
  };
};
out.txs = input.txs.map(parsed);

// Keyward as a remote signer.
const req = new ethers.FetchRequest(`${input.url}/rpc/ethereum`);
req.setHeader("Authorization", `Bearer ${input.token}`);
const provider = new ethers.JsonRpcProvider(req, 1, { staticNetwork: true, batchMaxCount: 1 });
out.rpc = {};
out.rpc.accounts = (await provider.listAccounts()).map((s) => s.address);
const signer = await provider.getSigner(input.address);
const text = "hello from ethers";
out.rpc.personal_sign = ethers.verifyMessage(text, await signer.signMessage(text));
const raw = await signer.signTransaction({
  to: "0x3535353535353535353535353535353535353535",
  value: 5n,
  gasLimit: 21000n,
  maxFeePerGas: 2000000000n,
  maxPriorityFeePerGas: 1n,
  nonce: 4,
  chainId: 1n,
  type: 2,
});
out.rpc.transaction = parsed(raw);
const legacy = await signer.signTransaction({
  to: "0x3535353535353535353535353535353535353535",
  value: 6n,
  gasLimit: 21000n,
  gasPrice: 1000000000n,
  nonce: 5,
  chainId: 1n,
  type: 0,
});
out.rpc.legacy = parsed(legacy);
const t = input.typed[input.typed.length - 1].typed_data;
const types = withoutDomain(t.types);
out.rpc.typed = ethers.verifyTypedData(
  t.domain,
  types,
  t.message,
  await signer.signTypedData(t.domain, types, t.message),
);
try {
  await signer.signTransaction({
    to: "0x4545454545454545454545454545454545454545",
    gasLimit: 21000n,
    gasPrice: 1n,
    nonce: 0,
    chainId: 1n,
    type: 0,
  });
  out.rpc.denied = null;
} catch (e) {
  out.rpc.denied = { code: e.error?.code ?? null, message: e.error?.message ?? String(e) };
}
provider.destroy();
console.log(JSON.stringify(out));
