"""Thread pages (cleaners/posts.py): every post of a forum / Q&A / comment page, in order, without chrome."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from lxml.html import fromstring

from cleaners.document import RawPage
from cleaners.extract import extract_html
from cleaners.posts import find_posts, post_lines
from cleaners.runner import ExtractStep, StepRunner

REPLIES = ["楼主说得对，这个问题我也遇到过，后来换了电源就好了。", "同意楼上，电源是关键，另外散热也要注意。",
           "我的情况不一样，是内存条松了，重新插一下解决。"]


def discuz_thread(replies: list[str]) -> str:
    """A Discuz! thread page: the first post and replies in `td.t_f#postmessage_N`, with a quote, a signature,
    vote buttons, and sidebar chrome around them."""
    posts = []
    question = "电脑开机后几分钟就自动重启，温度正常，请问可能是什么原因？求各位大神帮忙看看。"
    for i, text in enumerate([question, *replies]):
        quote = '<div class="quote"><blockquote>引用：原帖内容被引用在这里</blockquote></div>' if i == 2 else ""
        posts.append(f'<table class="plhin"><tr><td class="pls">用户{i}<br>积分 {i * 10}</td><td class="plc">'
                     f'<div class="pi"><strong>{i + 1}#</strong> 发表于 2024-05-0{i + 1}</div>'
                     f'<div class="pct"><div class="pcb"><div class="t_fsz"><table><tr>'
                     f'<td class="t_f" id="postmessage_{100 + i}">{quote}{text}</td></tr></table></div></div></div>'
                     f'<div class="sign">签名：天天开心 www.example.com</div>'
                     f'<div class="po"><a class="replyfast">回复</a> <a class="vote">支持 3</a></div>'
                     f'</td></tr></table>')
    return ('<html><head><title>电脑自动重启求助 - 硬件讨论 - 某某论坛</title></head><body>'
            '<div id="hd"><a href="/">首页</a> <a href="/forum.php">论坛</a></div>'
            '<div id="ct"><h1>电脑自动重启求助</h1><div id="postlist">' + "".join(posts) + '</div></div>'
            '<div id="ft">Powered by Discuz! X3.4 版权所有</div></body></html>')


def test_discuz_thread_keeps_every_post_in_order_without_chrome():
    html = discuz_thread(REPLIES)
    engine, posts = find_posts(fromstring(html), "https://bbs.example.com/thread-1-1-1.html")
    assert engine == "discuz" and len(posts) == 4
    assert [lines[-1] for lines in posts[1:]] == REPLIES       # order kept, quote removed from the third
    assert all("引用" not in line and "签名" not in line and "回复" not in line for p in posts for line in p)

    result = extract_html(html, url="https://bbs.example.com/thread-1-1-1.html")
    for reply in REPLIES:
        assert reply in result.text
    assert result.text.index(REPLIES[0]) < result.text.index(REPLIES[1]) < result.text.index(REPLIES[2])
    assert "签名" not in result.text and "积分" not in result.text and "引用" not in result.text
    assert result.path == "thread:discuz"
    without = extract_html(html, url="https://bbs.example.com/thread-1-1-1.html", threads=False)
    assert without.path == "discussion"                  # a forum URL: trafilatura's balanced mode, comments kept
    plain = extract_html(html, url="https://example.com/a.html", threads=False)
    assert plain.path == "precision"


def test_stack_exchange_question_and_answers():
    body = "".join(f'<div class="answer"><div class="answercell"><div class="s-prose js-post-body"><p>{a}</p>'
                   f'</div><div class="js-vote-count">{n}</div></div></div>'
                   for n, a in enumerate(["Use a context manager so the file is closed even on errors.",
                                          "You can also call close() in a finally block, which is what the "
                                          "with statement does for you."]))
    html = ('<html><body><div class="question"><div class="postcell"><div class="s-prose js-post-body">'
            '<p>How do I make sure a file is closed in Python?</p></div></div></div>' + body + "</body></html>")
    engine, posts = find_posts(fromstring(html), "https://stackoverflow.com/questions/1")
    assert engine == "stackexchange"
    assert [p[0][:20] for p in posts] == ["How do I make sure a", "Use a context manage", "You can also call cl"]


def test_site_engines_only_on_their_site_and_no_thread_on_an_article():
    comments = "".join(f'<div class="comment-item"><p class="comment-content">评论第{i}条，写得很好。</p></div>'
                       for i in range(4))
    html = f"<html><body><article><p>{'正文内容。' * 40}</p></article>{comments}</body></html>"
    assert find_posts(fromstring(html), "https://movie.douban.com/subject/1/comments")[0] == "douban"
    assert find_posts(fromstring(html), "https://news.example.com/2024/05/01/story.html") is None  # news comments
    assert find_posts(fromstring("<html><body><p>只有一段。</p></body></html>"), None) is None


def test_post_lines_splits_blocks_and_breaks_and_keeps_tails():
    element = fromstring('<div>第一行<br>第二行<p>第三段 <b>加粗</b> 结尾</p><div class="signature">签名档</div>尾巴'
                         '<!-- 注释 -->后面</div>')
    assert post_lines(element) == ["第一行", "第二行", "第三段 加粗 结尾", "尾巴后面"]


def douban_comments(texts: list[str]) -> str:
    items = "".join(f'<div class="comment-item"><div class="comment"><h3><span class="comment-info">'
                    f'<a href="/people/{i}">用户{i}</a><span class="comment-time">2024-05-0{i % 9 + 1}</span>'
                    f'</span></h3>'
                    f'<p class="comment-content"><span class="short">{t}</span></p></div></div>'
                    for i, t in enumerate(texts))
    return ('<html><head><title>某电影 短评</title></head><body><div id="wrapper"><h1>某电影 短评</h1>'
            f'<div class="article"><div class="mod-bd" id="comments">{items}</div></div></div></body></html>')


SHORT_REVIEWS = ["这部电影的配乐很好听，值得再看一遍，演员的表演也很自然。",
                 "剧情节奏有点慢，但是结尾很感人，推荐给喜欢文艺片的朋友。",
                 "画面非常漂亮，每一帧都可以当壁纸，导演的审美在线。", "看完之后久久不能平静，想起了自己的青春岁月。"]


def test_precision_mode_never_loses_a_page_to_nothing():
    """trafilatura's precision mode finds nothing on this comments page: a balanced pass with comments runs
    (path `recall`); on douban's own comment pages the thread path takes every comment."""
    import trafilatura

    html = douban_comments(SHORT_REVIEWS)
    precision = trafilatura.bare_extraction(html, favor_precision=True, include_comments=False, include_tables=True)
    assert precision is None or not (precision.text or "").strip()
    result = extract_html(html, threads=False)
    recall = extract_html(html, threads=False, favor_precision=False, include_comments=True)
    assert result is not None and result.path == "recall" and result.text == recall.text
    assert all(review in result.text for review in SHORT_REVIEWS)
    douban = extract_html(html, url="https://movie.douban.com/subject/1/comments")
    assert douban.path == "thread:douban" and all(review in douban.text for review in SHORT_REVIEWS)


REAL_PAGES = Path(__file__).resolve().parents[1] / "bench" / "data" / "extraction"


def _real_page(page_id: str) -> tuple[bytes, str]:
    url = json.loads((REAL_PAGES / "truth.json").read_text("utf-8"))[page_id]["url"]
    return gzip.decompress((REAL_PAGES / "html" / f"{page_id}.html.gz").read_bytes()), url


def test_a_fragment_from_precision_mode_gives_way_to_a_balanced_pass_ten_times_longer():
    """learnku.com: precision mode keeps only the empty-comments notice (16 chars), the balanced pass the post
    (path `recall`); developers.pub Q&A page: only the heading "## 问题描述" against the answers. A Talkyard
    forum page whose balanced pass finds under 10x as much keeps precision mode's text."""
    html, url = _real_page("mh-forum-a2323d652d0eaf1b")
    before = extract_html(html, url, recall_retry_chars=0)
    assert before.path == "precision" and len(before.text) < 100 and "depcheck" not in before.text
    after = extract_html(html, url)
    assert after.path == "recall" and "npm i -g depcheck" in after.text and len(after.text) >= 10 * len(before.text)

    html, url = _real_page("mh-forum-f8a495be9c3382fb")
    assert extract_html(html, url, recall_retry_chars=0).text == "## 问题描述"
    after = extract_html(html, url)
    assert after.path == "recall" and "已优化下载体验" in after.text and "人太多，容易崩" in after.text

    html, url = _real_page("mh-forum-bba250a462daa9c4")
    kept = extract_html(html, url)
    balanced = extract_html(html, url, favor_precision=False, include_comments=True)
    assert kept.path.startswith("precision") and len(kept.text) < 100
    assert len(kept.text) < len(balanced.text) < 10 * len(kept.text)
    assert kept == extract_html(html, url, recall_retry_chars=0)


def test_extract_step_counts_the_path():
    runner = StepRunner([ExtractStep()])
    raw = RawPage(key="k", source="s", url="https://bbs.example.com/thread-1-1-1.html",
                  html=discuz_thread(REPLIES).encode())
    out = runner.run(raw)
    assert out.kept
    assert out.events[("extract", "count", "path:thread:discuz")] == 1


def token_f1(predicted: str, gold: str) -> float:
    """The benchmark's token F1 for Chinese (by character, whitespace ignored)."""
    pred, ref = Counter("".join(predicted.split())), Counter("".join(gold.split()))
    overlap = sum((pred & ref).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def test_real_forum_pages_gain_their_replies(corpus_samples):
    """zhihu answers, tieba floors and ruby-china replies: precision mode kept only part of the thread."""
    root = corpus_samples / "web" / "html_groundtruth" / "magic-html-zh" / "forum"
    truth = json.loads((root / "base.zh-subset.json").read_text("utf-8"))
    scores = {}
    for page_id, entry in truth.items():
        html = gzip.decompress((root / "htmls" / f"{page_id}.html.gz").read_bytes())
        with_threads = extract_html(html, url=entry["url"])
        without = extract_html(html, url=entry["url"], threads=False, discussion_recall=False)
        scores[entry["url"].split("/")[2]] = (token_f1(without.text, entry["content"]),
                                               token_f1(with_threads.text, entry["content"]), with_threads.path)
    assert scores["ruby-china.org"][0] < 0.7 and scores["ruby-china.org"][1] > 0.95
    assert scores["www.zhihu.com"][0] < 0.85 and scores["www.zhihu.com"][1] > 0.95
    assert scores["www.zhihu.com"][2] == "thread:zhihu"
    for before, after, _ in scores.values():                # no page loses
        assert after >= before - 1e-9


def test_discussion_urls():
    from cleaners.posts import is_discussion

    for url in ("https://forum.example.com/x", "https://community.example.org/a", "https://example.com/threads/1/",
                "https://example.com/viewtopic.php?t=1", "https://meta.example.dev/t/slug/123",
                "https://example.com/discussion/68941/title", "https://weibo.com/1/Oe6wI", "https://bbs.example.cn/a"):
        assert is_discussion(url), url
    for url in ("https://news.example.com/2024/05/01/story.html", "https://example.com/article/1", "", None,
                "http://[::1", "https://www.douban.com/note/639427226/"):
        assert not is_discussion(url), url


def test_a_douban_note_is_an_article_not_a_comment_thread():
    comments = "".join(f'<div class="comment-item"><p class="comment-content">评论第{i}条：写得真好。</p></div>'
                       for i in range(4))
    note = "".join(f"<p>这是一篇日记的第{i}段，讲述了作者在旅途中的所见所闻和一些感想，文字朴实而真诚。</p>"
                   for i in range(8))
    html = f"<html><body><div class='note'>{note}</div><div id='comments'>{comments}</div></body></html>"
    result = extract_html(html, url="https://www.douban.com/note/639427226/")
    assert result.path == "precision" and "旅途" in result.text and "评论第" not in result.text


@pytest.mark.parametrize("engine, post", [
    ("invision", '<div data-role="commentContent" class="ipsType_richText">{}</div>'),
    ("invision", '<div data-ips-hook="postContent" class="ipsRichText ipsRichText--user" data-role="commentContent">'
                 '{}</div>'),                                              # Invision Community 5
    ("vanilla", '<div class="Message userContent">{}</div>'),
    ("smf", '<div class="inner" id="msg_{n}">{}</div>'),
    ("kunena", '<div class="kmsgtext">{}</div>'),
    ("mybb", '<div class="post_body scaleimages">{}</div>'),
    ("flarum", '<div class="PostStream-item"><article class="Post"><div class="Post-body"><p>{}</p></div>'
               '</article></div>'),
])
def test_forum_engines(engine, post):
    texts = ["First post asking how to reset the router.", "Hold the button for ten seconds.", "That worked."]
    html = "<html><body>" + "".join(f'<div class="wrap"><span class="author">user{n}</span>'
                                    + post.replace("{n}", str(n)).format(text) + "</div>"
                                    for n, text in enumerate(texts)) + "</body></html>"
    assert find_posts(fromstring(html), "https://example.com/x") == (engine, [[t] for t in texts])


def test_a_known_engine_thread_is_not_sent_through_trafilatura(monkeypatch):
    from trafilatura import core

    def fail(*args, **kwargs):
        raise AssertionError("trafilatura ran on a known engine's thread")

    monkeypatch.setattr(core, "trafilatura_sequence", fail)
    result = extract_html(discuz_thread(REPLIES), url="https://bbs.example.com/thread-1-1-1.html")
    assert result.path == "thread:discuz" and all(reply in result.text for reply in REPLIES)


def test_discourse_crawler_view_keeps_each_post_body_without_meta():
    """Discourse serves crawlers `div.topic-body.crawler-post` blocks: author and time in `crawler-post-meta`,
    the body in `div.post[itemprop=text]` (seen on community.home-assistant.io and answers.netlify.com)."""
    bodies = ["My install is stuck on the starting screen after the update.",
              "Try disabling the custom integration and restarting.",
              "That fixed it, thanks!"]
    posts = "".join(
        f"<div id='post_{n}' class='topic-body crawler-post'><div class='crawler-post-meta'>"
        f"<span class='creator'><a href='/u/user{n}'>user{n}</a></span><span class='crawler-post-infos'>"
        f"<time class='post-time'>May 3, 2024</time></span></div>"
        f"<div class='post' itemprop='text'><p>{body}</p><aside class='quote'><blockquote>quoted</blockquote>"
        f"</aside></div></div>" for n, body in enumerate(bodies, 1))
    html = f"<html><body><div id='main-outlet'><h1>Stuck on starting</h1>{posts}</div></body></html>"
    engine, found = find_posts(fromstring(html), "https://community.example.org/t/stuck/724779")
    assert engine == "discourse" and found == [[body] for body in bodies]


def test_post_lines_trafilatura_already_holds_are_not_added_again():
    """trafilatura joins a post's paragraphs into one line where `post_lines` gives one per block: such lines are
    held by the text (whitespace and case aside) and not added a second time; a short reply that also occurs
    inside a longer post line is still kept once."""
    from cleaners.extract import _with_posts

    text = "Which Qt6 version?\n- Ubuntu 24.04 is late.  I always use the distro's Qt."
    posts = [["Ubuntu 24.04 is late.", "I always use the distro's Qt."], ["Thanks!", "Try 6.5, it is an LTS."],
             ["Thanks! That helped."], ["Thanks!"]]
    assert _with_posts(text, posts) == text + "\nThanks!\nTry 6.5, it is an LTS.\nThanks! That helped."
    assert _with_posts("", posts) == ("Ubuntu 24.04 is late.\nI always use the distro's Qt.\nThanks!\n"
                                      "Try 6.5, it is an LTS.\nThanks! That helped.")


def forum_page(chrome: str, posts: list[str]) -> str:
    items = "".join(f'<div class="entry"><span class="who">user{n}</span><p>{post}</p></div>'
                    for n, post in enumerate(posts))
    return f"<html><body>{chrome}<main><h1>Router keeps rebooting</h1>{items}</main></body></html>"


FORUM_POSTS = ["My router reboots every night at two, firmware is current.", "Check the scheduled reboot option.",
               "That was it, thank you."]


@pytest.mark.parametrize("chrome", [
    # a sidebar widget of recent activity (BuddyPress on magiciansandmagic.com, wpForo's recent topics)
    "<aside class='widget'><ul>" + "".join(f"<li class='activity'><div class='entry-activity'>Member {i} posted "
                                          f"an update about a new trick with cards and coins that everyone should "
                                          f"see at least once this week</div></li>" for i in range(5))
    + "</ul></aside>",
    # the same list as a navigation landmark, and a hidden modal's cheat sheet (forums.flaskbb.org)
    "<div role='navigation'>" + "".join(f"<div class='item'>Forum section number {i} with a long description of "
                                        f"what belongs in it and what does not</div>" for i in range(5)) + "</div>",
    "<div class='modal fade' role='dialog'><div class='cheatsheet'>" + "".join(
        f"<div class='row'>**Bold text** renders bold, and _this_ renders in italics in help row {i}</div>"
        for i in range(6)) + "</div></div>",
    # teaser links to other threads (Apache Answer's related questions)
    "<div class='related'>" + "".join(f"<a href='/q/{i}'><div class='link-dark'>How do I configure the mail "
                                      f"server for the forum software to send mail {i}?</div></a>"
                                      for i in range(5)) + "</div>",
])
def test_a_generic_group_is_never_page_chrome(chrome):
    """A group inside <aside>, <nav>, <header>, <footer>, a link, or an ARIA navigation / dialog (and the other
    landmark roles) is no thread: on these pages the largest group was such a widget."""
    engine, posts = find_posts(fromstring(forum_page(chrome, FORUM_POSTS)), "https://forum.example.com/t/1")
    assert engine == "generic" and [post[-1] for post in posts] == FORUM_POSTS


def test_lines_every_post_of_a_generic_group_repeats_are_its_template():
    """NodeBB writes "Offline", "wrote on" and "last edited by" into every post, Baidu Zhidao "展开全部" and its
    rating buttons into every answer: lines that half the posts (and at least three) hold word for word go."""
    posts = "".join(f'<div class="post-container"><p>Offline</p><p>user{n}</p><p>wrote on</p><p>#{n}</p>'
                    f'<p>{text}</p><p>Thanks!</p></div>'
                    for n, text in enumerate([*FORUM_POSTS, "Mine does that too."]))
    html = f"<html><body><main>{posts}</main></body></html>"
    engine, found = find_posts(fromstring(html), "https://community.example.org/topic/18427/x")
    assert engine == "generic"
    assert found == [[f"user{n}", f"#{n}", text] for n, text in enumerate([*FORUM_POSTS, "Mine does that too."])]


def test_share_widgets_are_chrome_in_a_post():
    element = fromstring('<div class="bd answer"><p>地震预警可以提前几秒到几十秒发出警报。</p><div class="share-area">'
                         '<div class="wgt-share-link">复制链接https://zhidao.baidu.com/question/1/answer/2.html</div>'
                         '</div></div>')
    assert post_lines(element) == ["地震预警可以提前几秒到几十秒发出警报。"]


def test_xenforo_1_message_text():
    """XenForo 1.x (forums.sherdog.com, gtplanet.net, digitalpoint.com): `li.message` holds the post body in
    `blockquote.messageText`, quotes in `div.bbCodeQuote`."""
    items = "".join(f'<li id="post-{n}" class="message" data-author="user{n}"><div class="messageUserInfo">'
                    f'<a class="username">user{n}</a><dl><dt>Joined:</dt><dd>Jul 12, 2018</dd></dl></div>'
                    f'<div class="messageContent"><article><blockquote class="messageText SelectQuoteContainer ugc">'
                    + ('<div class="bbCodeBlock bbCodeQuote"><div class="quote">earlier post</div></div>' if n else "")
                    + f'{text}</blockquote></article></div></li>' for n, text in enumerate(FORUM_POSTS))
    html = f'<html><body><ol class="messageList" id="messageList">{items}</ol></body></html>'
    assert find_posts(fromstring(html), "https://forums.example.com/threads/x.1/") == (
        "xenforo", [[text] for text in FORUM_POSTS])


def test_a_post_group_outside_forum_urls_is_added_only_where_trafilatura_found_one_of_its_posts():
    """`find_replies`: on a URL no rule names a forum, a group of post-like classes is added to trafilatura's text
    only when that text holds one of its posts. bpdfamily.com's SMF-like board (`message_board/index.php`): the
    first post, then 29 replies (token F1 0.415 -> 0.924); lucianne.com's article with a member's latest posts as
    `div.post-preview` teasers: trafilatura's text holds none of them, nothing is added."""
    from cleaners.extract import _holds_a_post
    from cleaners.posts import find_replies

    assert _holds_a_post("Title\nMy router reboots every night. Firmware is current.",
                         [["Other thread"], ["My router reboots every night.", "Firmware is current.", "Help?"]])
    assert not _holds_a_post("Title\nMy router reboots every night.", [["My router", "reboots at two", "every day"]])

    html, url = _real_page("harvest-49479a6c8717")
    result = extract_html(html, url)
    assert result.path == "thread:replies" and len(result.text) > 3 * len(extract_html(html, url, threads=False).text)
    html, url = _real_page("mh-forum-6d0accd9dc90227d")
    tree = fromstring(html)
    assert len(find_replies(tree)) == 24 and "Fear Trump--Or Bust?" in tree.text_content()
    result = extract_html(html, url)
    assert result.path == "precision:confident" and "Fear Trump" not in result.text
