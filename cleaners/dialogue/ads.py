"""What makes a repeated reply an advertisement: ad cues in its text.

LCCC (Wang et al. 2020, section 3.2) calls a reply that follows more than 5 different contexts an ad. On clean,
knowledge-grounded dialogue that rule removes factual answers ("1小时-2小时。", "旺季60元，淡季40元。") that repeat
because the questions repeat. So a reply counts as an ad at LCCC's limit only when its text carries ad cues
(`ad_cues`): a request to make contact (加微信, QQ群, 私信, 公众号, "DM me") is enough on its own; otherwise two
different kinds among a contact detail (the PII placeholders `<PHONE>`, `<QQ>`, `<WECHAT>`, `<EMAIL>`: alone it
answers "what is the number?" as often as it advertises), promotional wording (优惠, 包邮, 代购, "discount", the
web-text ad and spam lists), a call to action (点击, 扫码, 关注, "click", "subscribe") and a price (¥30, 30元,
$30). A reply without cues is an ad only when it follows far more contexts than the corpus size makes likely
(`pipelines.dialogue_stages.AdReplies`, `plain_limit`). Word choices are this project's.
"""
from __future__ import annotations

import re

from cleaners.filters.wordlist import WordList

CONTACT_RE = re.compile(
    r"公众号|加微信|加我微信|薇信|威信|v信|\bvx\b|加微|加v|qq群|加群|进群|私信|私聊|联系方式|客服"
    r"|whatsapp|telegram|\bdm me\b|\bcontact us\b|\bemail us\b|\bcall us\b", re.IGNORECASE)
#: a contact detail alone (the PII placeholders) is a fact as often as an ad: "电话是<PHONE>。" answers a question
CONTACT_DETAIL_RE = re.compile(r"<(?:PHONE|QQ|WECHAT|EMAIL)>")
PROMO_RE = re.compile(
    r"优惠|红包|领取|特价|折扣|打折|促销|包邮|秒杀|代购|招商|加盟|兼职|日赚|月入|免费领|免费送|限时|抢购|返利|团购|低价|清仓|正品"
    r"|淘宝|店铺|下单|代理|互粉|求关注|求粉|\bdiscount|\bpromo|\bcoupon|\bon sale\b|\bfree shipping\b|\bcheap\b"
    r"|\bearn money\b|\d+\s*% off\b", re.IGNORECASE)
ACTION_RE = re.compile(
    r"点击|扫码|扫一扫|关注|戳|链接|详情|咨询|速来|快来|\bclick\b|\bsubscribe\b|\bfollow (?:me|us)\b|\bvisit\b"
    r"|\bsign up\b|\bcheck out\b|\blink in\b|\bbuy now\b|\border now\b", re.IGNORECASE)
PRICE_RE = re.compile(r"[¥￥$]\s*\d|\d\s*(?:元|块钱|rmb\b|usd\b|dollars?\b)", re.IGNORECASE)
_AD_LISTS = WordList(lists=["zh_ads", "en_spam"])


def ad_cues(text: str) -> set[str]:
    """The kinds of ad cue in `text`: "contact", "contact-detail", "promo", "action", "price"."""
    cues = set()
    squeezed = "".join(text.split())        # "加 微信" is still 加微信
    if CONTACT_RE.search(text) or CONTACT_RE.search(squeezed):
        cues.add("contact")
    if CONTACT_DETAIL_RE.search(text):
        cues.add("contact-detail")
    if PROMO_RE.search(text) or PROMO_RE.search(squeezed) or _AD_LISTS.count_hits(text):
        cues.add("promo")
    if ACTION_RE.search(text):
        cues.add("action")
    if PRICE_RE.search(text):
        cues.add("price")
    return cues


def looks_like_ad(text: str) -> bool:
    """A contact cue, or two different kinds of the other cues (a contact detail is one of them)."""
    cues = ad_cues(text)
    return "contact" in cues or len(cues) >= 2
