"""One case through the six steps in a real browser, as the school's psychology teacher
(and the principal, who approves a level-3 plan).

数据监测 → 发出预警 → 调研访谈 → 制定方案 → 分类干预 → 实时更新, on the case the
seeded PHQ-9 answer opened (see seed.py). The visible state is checked after every
step; the database at the end (one CaseEvent per transition, who did it).

Expected texts are written out here from the declarations they come from:
``rules/alerts/phq9.yaml`` (rule ``phq9.item9``, level 3), ``rules/levels.yaml``
(3 = 严重), ``rules/interventions/level3.yaml`` (tasks, five exit criteria).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from xinshu.models import Case, CaseEvent, GuardianConsent, Interview, Referral

from .conftest import PLAYWRIGHT_MISSING
from .seed import HOSPITAL, PHQ9_TOTAL, PRINCIPAL, PSY

pytestmark = pytest.mark.browser
# Without the package (an old environment) the module is skipped; in CI conftest.py fails first.
expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

#: rules/interventions/level3.yaml
TASK_INTERVIEW = "当天完成调研访谈与风险评估"
TASK_PRINCIPAL = "报告校长（第一责任人）"
TASK_REFERRAL = "建议并协助转介医院心理科/精神科"
TASK_FOLLOW_UP = "每周随访"
EXIT_CRITERIA = ("safety_plan", "referral_outcome", "risk_reassessed", "stable_follow_up", "principal_reviewed")
#: The interview: one option per required choice (radio ids f_<field>-<option>), the safety-plan texts.
INTERVIEW_CHOICES = {
    "suicidal_ideation": "passive",
    "suicide_plan": "none",
    "means_access": "none",
    "past_attempt": "none",
    "self_harm_history": "none",
    "bullying": "none",
    "family_conflict": "occasional",
    "family_support": "good",
    "peer_relationships": "close_friends",
    "help_seeking": "willing",
    "interview_mode": "in_person",
}
INTERVIEW_TEXTS = {
    "warning_signs": "考试前失眠、独处时反复想到自己没用",
    "coping_strategies": "听音乐、跑步、写日记",
    "contacts": "母亲；班主任；心理老师（学校电话）",
    "professional_help": "12356 心理援助热线；学校心理辅导室",
    "environment_safety": "监护人收好家中药品和刀具",
}
INTERVIEW_REASON = "面谈确认第9题的被动死亡念头，无计划、无手段，维持严重等级"
CLOSE_REASON = "五项结案条件均已满足，转入常规心理关注"


def open_case(page, url: str, case_id: int) -> None:
    page.goto(f"{url}/admin/caseflow/case/{case_id}/")
    expect(page.get_by_role("heading", name=f"个案 #{case_id}")).to_be_visible()


def submit(page, locator) -> None:
    """Click a submit button and wait for the POST/redirect/GET to land."""
    with page.expect_navigation():
        locator.click()


def advance(page, label: str, reason: str = "") -> None:
    """Press one of the case's transition buttons (with a reason, when given)."""
    if reason:
        page.fill("#advance #reason", reason)
    submit(page, page.locator("#advance").get_by_role("button", name=label, exact=True))
    expect(page.locator(".alert-success")).to_contain_text(f"已{label}")


def task_row(page, title: str):
    return page.locator("#tasks tbody tr").filter(has_text=title)


def complete_task(page, title: str) -> None:
    """Mark the open task ``title`` done."""
    row = task_row(page, title).filter(has_text="待办").first
    submit(page, row.get_by_role("button", name="完成"))
    expect(page.locator(".alert-success")).to_contain_text(f"任务「{title}」已完成")


def test_one_case_through_the_six_steps(open_page, login, live_server, shot):
    url, ids = live_server.url, live_server.ids
    case_id = ids["case"]
    page = open_page()
    login(page, PSY)

    # 1 数据监测: the seeded PHQ-9 answer is scored (1+2+1+0+1+1+0+1+1 = 8, band mild).
    page.goto(f"{url}/admin/response/")
    expect(page.locator("table.model-list")).to_contain_text(f"total={PHQ9_TOTAL}/mild")
    shot("1-monitoring")

    # 2 发出预警: the level-3 warning from rule phq9.item9 is in the list, with why; its case is open.
    page.goto(f"{url}/admin/warning/")
    row = page.locator("table.model-list tbody tr").filter(has_text="phq9.item9")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("3 严重")
    expect(row).to_contain_text("第9题（死亡/自伤念头）回答大于0，无论总分多少都必须预警")
    expect(row).to_contain_text("未处理")
    page.goto(f"{url}/admin/caseflow/")
    listed = page.locator("#cases tbody tr").filter(has_text=f"个案 #{case_id}")
    expect(listed).to_contain_text("已预警")
    expect(listed).to_contain_text("待审批")
    shot("2-warned")

    # 3 调研访谈: take the case up, fill in the interview form, confirm level 3.
    submit(page, listed.get_by_role("link", name=f"个案 #{case_id}"))
    expect(page.locator("#state")).to_have_text("已预警")
    advance(page, "开始调研访谈")
    expect(page.locator("#state")).to_have_text("调研访谈")
    page.get_by_role("link", name="填写调研访谈表").click()
    expect(page.get_by_role("heading", name="学生心理危机调研访谈表")).to_be_visible()
    for field, option in INTERVIEW_CHOICES.items():
        page.check(f"#f_{field}-{option}")
    for field, text in INTERVIEW_TEXTS.items():
        page.fill(f"#f_{field}", text)
    page.check("#f_plan_shared_with-student")
    page.check("#f_plan_shared_with-guardian")
    page.check("#f_guardian_informed-yes")
    expect(page.locator("#level")).to_have_value("3")
    page.check("#kind-confirm")
    page.fill("#reason", INTERVIEW_REASON)
    shot("3-interview-form")
    submit(page, page.get_by_role("button", name="保存访谈并进入制定方案"))
    expect(page.locator(".alert-success")).to_contain_text("调研访谈已记录，进入制定方案")
    expect(page.locator("#state")).to_have_text("制定方案")
    expect(page.locator("body")).to_contain_text(f"等级 3 → 3，理由：{INTERVIEW_REASON}")
    expect(task_row(page, TASK_INTERVIEW)).to_contain_text(f"已完成（{PSY}")
    shot("3-interviewed")

    # 4 制定方案: the plan is the level-3 template's; intervention waits for the principal.
    for title in (TASK_PRINCIPAL, TASK_REFERRAL, "学校心理辅导（每周一次）", TASK_FOLLOW_UP):
        expect(task_row(page, title)).to_contain_text("待办")
    expect(page.locator("#approval")).to_contain_text("3 级个案的方案须经校长审批后方可开始干预")
    start = page.locator("#advance").get_by_role("button", name="开始干预实施", exact=True)
    expect(start).to_be_disabled()
    shot("4-plan-awaits-approval")

    principal = open_page()
    login(principal, PRINCIPAL)
    open_case(principal, url, case_id)
    principal.fill("#approve input[name=reason]", "同意按方案实施")
    submit(principal, principal.get_by_role("button", name="审批通过方案"))
    expect(principal.locator(".alert-success")).to_contain_text("已审批干预方案")
    expect(principal.locator("#approval")).to_contain_text(f"校长审批：{PRINCIPAL}")
    expect(principal.locator("#advance")).to_have_count(0)  # the principal approves, but does not drive
    shot("4-approved", on=principal)

    page.reload()
    expect(page.locator("#approval")).to_contain_text(f"校长审批：{PRINCIPAL}")
    advance(page, "开始干预实施")
    expect(page.locator("#state")).to_have_text("干预实施")
    shot("4-intervening")

    # 5 分类干预: tasks done; the guardian's consent, then a hospital referral and its loop.
    complete_task(page, TASK_PRINCIPAL)
    page.goto(f"{url}/admin/casedesk/case/{case_id}/")
    page.select_option("#consent-purpose", "referral")
    page.check("#consent-decision-0")  # 同意
    page.select_option("#consent-relation", "mother")
    page.fill("#consent-evidence", "母亲签字的转介同意书，存心理辅导室档案柜")
    submit(page, page.locator("#consent-form").get_by_role("button", name="登记"))
    expect(page.locator(".alert-success")).to_contain_text("已登记监护人意见")
    expect(page.locator("#consents tbody tr")).to_contain_text("同意")
    page.select_option("#refer-kind", "hospital")
    page.select_option("#refer-partner", label=f"[医院] {HOSPITAL[0]} {HOSPITAL[1]}")
    page.fill("#refer-reason", "被动死亡念头，建议医院心理科评估")
    submit(page, page.get_by_role("button", name="转介", exact=True))
    expect(page.locator(".alert-success")).to_contain_text("已登记转介")
    referral = page.locator("#referrals tbody tr").first
    expect(referral).to_contain_text(HOSPITAL[0])
    expect(referral).to_contain_text("已转出")
    submit(page, referral.get_by_role("button", name="登记对方已接收"))
    expect(page.locator("#referrals tbody tr").first).to_contain_text("对方已接收")
    page.locator("#referrals tbody tr").first.locator("textarea").fill("医院评估：轻度抑郁，门诊随访，无需住院")
    submit(page, page.locator("#referrals tbody tr").first.get_by_role("button", name="登记转介结果"))
    expect(page.locator("#referrals tbody tr").first).to_contain_text("已反馈结果")
    shot("5-referral")

    open_case(page, url, case_id)
    complete_task(page, TASK_REFERRAL)
    expect(task_row(page, TASK_PRINCIPAL)).to_contain_text("已完成")
    advance(page, "转入跟踪随访")
    expect(page.locator("#state")).to_have_text("跟踪随访")
    shot("5-follow-up")

    # 6 实时更新: a weekly follow-up (the next one appears), every exit criterion, then close.
    complete_task(page, TASK_FOLLOW_UP)
    follow_ups = task_row(page, TASK_FOLLOW_UP)
    expect(follow_ups).to_have_count(2)
    expect(follow_ups.filter(has_text="待办")).to_have_count(1)
    expect(follow_ups.filter(has_text="已完成")).to_have_count(1)
    close = page.locator("#advance").get_by_role("button", name="结案", exact=True)
    expect(close).to_be_disabled()
    for number in range(1, len(EXIT_CRITERIA) + 1):
        pending = page.locator("#exit-criteria li form").first
        pending.locator("input[name=note]").fill(f"依据 {number}")
        submit(page, pending.get_by_role("button", name="记录已满足"))
        expect(page.locator(".alert-success")).to_contain_text("已记录结案条件")
        expect(page.locator("#exit-criteria li form")).to_have_count(len(EXIT_CRITERIA) - number)
    expect(page.locator("#exit-criteria li").filter(has_text="☑")).to_have_count(5)
    shot("6-exit-criteria")
    advance(page, "结案", CLOSE_REASON)
    expect(page.locator("#state")).to_have_text("已结案")
    expect(page.locator("#advance")).to_have_count(0)
    expect(page.locator(".alert-secondary")).to_contain_text("不能再变更")
    shot("6-closed")

    # The database: one CaseEvent per transition, by whom; approval, interview, referral, consent.
    with live_server.services.db.sessionmaker() as session:
        case = session.get(Case, case_id)
        events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)).all()
        transitions = [(e.from_state, e.to_state, e.actor) for e in events if e.kind == "state"]
        assert transitions == [
            (None, "warned", "system"),
            ("warned", "interviewing", PSY),
            ("interviewing", "planning", PSY),
            ("planning", "intervening", PSY),
            ("intervening", "follow_up", PSY),
            ("follow_up", "closed", PSY),
        ]
        closing = next(e for e in events if e.kind == "state" and e.to_state == "closed")
        assert closing.reason == CLOSE_REASON
        approvals = [(e.actor, e.reason) for e in events if e.kind == "plan" and e.reason.startswith("校长审批")]
        assert approvals == [(PRINCIPAL, "校长审批通过干预方案：同意按方案实施")]
        assert [e.actor for e in events if e.kind == "interview"] == [PSY]
        assert [e.kind for e in events].count("referral") == 3  # sent, acknowledged, outcome
        assert [e.kind for e in events].count("consent") == 1
        criteria_events = [e for e in events if e.kind == "plan" and e.reason.startswith("结案条件已满足")]
        assert len(criteria_events) == 5
        assert (case.state, case.plan_approved_by, case.closed_reason) == ("closed", PRINCIPAL, CLOSE_REASON)
        assert sorted(case.exit_criteria) == sorted(EXIT_CRITERIA)
        assert {task.status for task in case.tasks} == {"done", "cancelled"}  # closing cancels what was open
        interview = session.scalar(select(Interview).where(Interview.case_id == case_id))
        assert (interview.level_before, interview.level_after, interview.interviewer) == (3, 3, PSY)
        assert interview.answers["suicidal_ideation"] == "passive"
        assert interview.answers["guardian_informed"] is True
        referral_row = session.scalar(select(Referral).where(Referral.case_id == case_id))
        assert (referral_row.kind, referral_row.status, referral_row.partner_id) == (
            "hospital",
            "outcome",
            ids["partner"],
        )
        consent = session.scalar(select(GuardianConsent).where(GuardianConsent.student_id == ids["student"]))
        assert (consent.purpose, consent.decision, consent.recorded_by) == ("referral", "granted", PSY)
