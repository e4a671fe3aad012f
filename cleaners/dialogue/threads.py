"""Thread dumps to sessions (no Beam): the posts of one thread (ids and parent ids) become one session per
root-to-leaf path. `pipelines.dialogue_stages.ThreadsToSessions` groups posts into threads with shuffles and calls
`build_thread` on each.
"""
from __future__ import annotations

from typing import Any

from cleaners.dialogue.records import Post, Session


def is_valid_post(post: Any) -> bool:
    return (isinstance(post, Post) and isinstance(post.id, str) and post.id != "" and isinstance(post.text, str)
            and (post.parent_id is None or isinstance(post.parent_id, str)))


def post_order(post: Post) -> tuple[str, str, str, str, str]:
    return (post.key, post.source, post.text, post.parent_id or "", post.author)


def thread_key(post: Post) -> str | None:
    thread = post.meta.get("thread_id") if isinstance(post.meta, dict) else None
    return None if thread in (None, "") else str(thread)


def build_thread(posts: list[Post], max_depth: int, missing_parent: str = "root"
                 ) -> tuple[list[Session], list[tuple[Post, str]]]:
    """Sessions of one thread (posts with distinct ids) and the outcome of every post.

    Outcomes: `out` (the leaf of one session), `merged-into-session` (an inner post: its text lives on in the
    sessions below it), `no-reply` (a root without replies: one turn is no dialogue), `cycle` (its parent links
    never reach a root: on a cycle or below one), `missing-parent` (its parent is not in the dump and
    `missing_parent="drop"`; the post's whole subtree goes with it). With `missing_parent="root"` (default) such a
    post starts a thread of its own: Weibo/forum dumps routinely lack the post being replied to, and the replies
    below it are still a dialogue. A path longer than `max_depth` keeps its last `max_depth` posts, the context
    nearest the leaf's reply."""
    by_id = {post.id: post for post in posts}
    children: dict[str, list[str]] = {}
    roots = []
    for post in sorted(posts, key=lambda p: p.id):
        parent = post.parent_id or ""
        if not parent:
            roots.append(post.id)
        elif parent not in by_id:
            if missing_parent == "root":
                roots.append(post.id)
        else:
            children.setdefault(parent, []).append(post.id)
    up = {child: parent for parent, kids in children.items() for child in kids}
    outcome: dict[str, str] = {}
    sessions = []
    for root in roots:
        stack = [root]
        while stack:
            node = stack.pop()
            below = children.get(node, [])
            stack.extend(reversed(below))
            if below:
                outcome[node] = "merged-into-session"
            elif node == root:
                outcome[node] = "no-reply"
            else:
                outcome[node] = "out"
                sessions.append(_path_session(node, root, up, by_id, max_depth))
    for post in posts:
        if post.id not in outcome:
            outcome[post.id] = _unreached_reason(post.id, by_id)
    return sessions, [(by_id[i], outcome[i]) for i in sorted(by_id)]


def _path_session(leaf: str, root: str, up: dict[str, str], by_id: dict[str, Post], max_depth: int) -> Session:
    """The session of the path root -> leaf, cut to its last `max_depth` posts."""
    path = [leaf]
    while path[-1] != root and len(path) < max_depth:
        path.append(up[path[-1]])
    chain = [by_id[i] for i in reversed(path)]
    authors = [post.author for post in chain]
    return Session(turns=[post.text for post in chain], source=by_id[root].source, key=by_id[leaf].key,
                   speakers=authors if any(authors) else None,
                   meta={"thread_root": root, "post_ids": [post.id for post in chain]})


def _unreached_reason(post_id: str, by_id: dict[str, Post]) -> str:
    """Why a post was not reached from a root: its chain of parents loops (`cycle`) or ends at a missing post."""
    seen = set()
    node = post_id
    while node in by_id and node not in seen:
        seen.add(node)
        node = by_id[node].parent_id or ""
    return "cycle" if node in seen else "missing-parent"
