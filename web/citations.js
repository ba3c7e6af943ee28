// Citation markers in an answer, as models write them: [1], [2][3], [1, 2], [1-3], and (GLM-4, above all in
// Chinese) 【1】 ［1］ 【1,2】 [1、2] [1，3] [^1] [Source 1] [来源1] 【来源：1】 [文档1], ranges [1~3] [1至3], full-width
// digits (【１】 【１，２】 【１－３】), and OpenAI's 【4†source】 【4†L1-L5】 (after the dagger: a title or lines, not a source).
// Parentheses never cite ("(1)" is a list item); code spans and fenced code blocks are skipped ("a[1]").
// NOTE: the same pattern as retrieval/context.py's _CITATION (which sets `cited` on the server); change both.
const SP = "[ \\t\\u3000]*";
const DIGIT = "[0-9０-９]";
const WORDS = "sources?|docs?|documents?|refs?|来源|出处|文档|资料|参考资料|参考文献|参考";
const LABEL = `(?:\\^|(?:${WORDS})${SP}[:：#]?)`;
const ITEM = `(?:${LABEL}${SP})?${DIGIT}{1,6}(?:${SP}[-–—－~～至到]${SP}${DIGIT}{1,6})?`;
const DAGGER = "†[^\\[\\]【】［］\\n]{0,200}"; // OpenAI's 【4†source】: the rest of the marker, outside the numbers
const CITATION = new RegExp(
  "^[ \\t]*(`{3,}|~{3,})[\\s\\S]*?(?:^[ \\t]*\\1|(?![\\s\\S]))" + // a fenced code block (unclosed: to the end)
    "|(`+)(?!`)[^\\n]*?[^`\\n]\\2(?!`)" + // a code span, within a line
    `|[\\[【［]${SP}(${ITEM}(?:${SP}[,，、;；]${SP}${ITEM})*)(?:${SP}${DAGGER})?${SP}[\\]】］]`,
  "gmi",
);
const NUMBERS = new RegExp(`(${DIGIT}+)(?:${SP}[-–—－~～至到]${SP}(${DIGIT}+))?`, "g");
// "１２" as 12: Number() reads ASCII digits only (full-width ones are U+FF10..U+FF19)
const toNumber = (digits) => Number(digits.replace(/[０-９]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0)));

/**
 * The citation markers of `text` whose every number names a source (`isSource(n)`), as
 * {start, end, numbers} (ranges expanded, in the order written); any other ("[2024]", "[0]", "[1-1000]") is text.
 */
export function citations(text, isSource) {
  const out = [];
  for (const m of text.matchAll(CITATION)) {
    if (m[3] === undefined) continue; // code
    const numbers = [];
    let ok = true;
    for (const [, lo, hi] of m[3].matchAll(NUMBERS)) {
      const first = toNumber(lo);
      const last = toNumber(hi ?? lo);
      if (first > last || last - first > 1000) ok = false;
      for (let n = first; ok && n <= last; n++) {
        if (isSource(n)) numbers.push(n);
        else ok = false;
      }
      if (!ok) break;
    }
    if (ok) out.push({ start: m.index, end: m.index + m[0].length, numbers });
  }
  return out;
}
