"""The samples in Simplified Chinese: one per English sample (same slug), whose scripted answers
make the same mistake and catch it in the same reflection, phrased so that the answer checks
(playground/answer_checks.py) can read their claims.
"""

# The answers are prose with one paragraph per line, as a model writes them; wrapping them at
# 100 columns would put line breaks into the text the simulator streams.
# ruff: noqa: E501

from __future__ import annotations

from inference.samples.script import ODD_NUMBERS_CODE, Sample, scripted

LANGUAGE = "zh-hans"

_STRAWBERRY = scripted(
    """
我需要数一数字母“r”在单词“strawberry”里出现了几次。

这个单词由两部分组成：“straw”和“berry”。“straw”里的 r 有 1 个，“berry”里的 r 也有 1 个，所以这个单词里有 2 个 r。

<reflection>
我数得太快了。“berry”的拼写是 b-e-r-r-y，里面的 r 是双写的，所以这一部分的 r 应该算 2 个，而不是 1 个。把整个单词逐个字母拼出来：s、t、r、a、w、b、e、r、r、y。r 分别是第 3、第 8 和第 9 个字母，所以 r 一共有 3 个，不是 2 个。
</reflection>

再按两部分核对一遍：“straw”里 r 有 1 个，“berry”里有 2 个，1 + 2 = 3。两种数法结果一致。
""",
    """
单词“strawberry”里有 **3** 个 r：“straw”里 1 个，“berry”里 2 个（s-t-**r**-a-w-b-e-**r**-**r**-y）。
""",
)

_DECIMALS = scripted(
    """
两个数的整数部分相同，都是 9，所以要比较小数部分。

小数点后面，9.11 是“11”，9.9 是“9”。11 比 9 大，所以 9.11 更大。

<reflection>
前面的比较是错的。我把小数点后面的数字当成整数来比了，可是小数的每一位都有自己的位值。9.11 的小数部分是 0.11，也就是 11 个百分之一；9.9 的小数部分是 0.9，也就是 9 个十分之一，等于 0.90，即 90 个百分之一。把两个数都写成两位小数，就是 9.11 和 9.90，显然 9.90 更大。这个陷阱来自版本号和日期：在那里 9.11 确实排在 9.9 后面，但那种先后顺序并不是数值的大小。
</reflection>

验算：9.9 - 9.11 = 0.79，结果是正数，所以 9.9 更大。
""",
    """
**9.9** 更大，比 9.11 大 0.79。

把两个数写成相同的小数位数再比：9.90 对 9.11。90 个百分之一多于 11 个百分之一，所以 9.9 比 9.11 大。（在版本号里，9.11 排在 9.9 之后；但作为小数，9.11 是较小的那个。）
""",
)

_AGATHA = scripted(
    """
凶手住在德雷伯里庄园，所以嫌疑人是阿加莎、管家和查尔斯。凶手必须恨受害者，而且不能比受害者更富有。

首先，阿加莎恨谁？她恨除管家以外的所有人。阿加莎不是管家，所以她恨查尔斯，也恨她自己。

凡是阿加莎恨的人，查尔斯都不恨。阿加莎恨阿加莎，所以查尔斯不恨阿加莎。凶手总是恨受害者，所以查尔斯不是凶手。

阿加莎恨的每一个人，管家都恨，所以他恨阿加莎（也恨查尔斯）。他恨受害者，所以管家就是凶手。

<reflection>
我下结论太早了。恨受害者只是 2 个条件之一：凶手还绝不会比受害者更富有，而我没有对管家检查这一点。管家已经恨阿加莎和查尔斯。如果他还恨自己，他就恨所有人了，可是没有人恨所有人。所以管家不恨自己。管家恨所有不比阿加莎富有的人，而他不恨自己，所以他一定比阿加莎富有。凶手绝不会比受害者更富有，所以管家不可能是凶手。我还漏掉了一个嫌疑人：“住在德雷伯里庄园的某个人”也包括阿加莎本人。
</reflection>

这样就只剩下阿加莎了。逐一检查这 2 个条件：她恨除管家以外的所有人，所以她恨自己；而且没有人会比自己更富有。2 个条件都满足，其他嫌疑人又都已排除，所以阿加莎是自杀。
""",
    """
杀死阿加莎姑妈的凶手是**阿加莎本人**，也就是说，阿加莎是自杀。

- **查尔斯**被排除：阿加莎恨她自己（她恨除管家以外的所有人），而凡是阿加莎恨的人查尔斯都不恨，所以他不恨阿加莎。凶手总是恨受害者。
- **管家**被排除：阿加莎恨的人他都恨，所以如果他也恨自己，他就恨所有人了，而没有人恨所有人。他恨所有不比阿加莎富有的人，却不恨自己，可见他比阿加莎富有；而凶手绝不会比受害者更富有。
- **阿加莎**同时满足这 2 个条件：她恨自己，而且不比自己富有。
""",
)

_WEISSENSEE = scripted(
    """
提问的人想在柏林魏森湖区（Weißensee）度过一个下午。魏森湖区位于柏林东北部，隶属于潘科区（Pankow）。好的建议应该是确实位于魏森湖区、而且彼此离得够近、几个小时内就能串起来的地方。

候选地点：
1. 白湖（Weißer See）本身，魏森湖区就是以这片湖命名的。湖的四周是公园，湖中央有喷泉，岸边有 Strandbad Weißensee 湖滨浴场和 Milchhäuschen 咖啡馆。
2. 魏森湖犹太公墓（Jüdischer Friedhof Weißensee），欧洲最大的犹太公墓之一，1880 年启用。
3. 位于 Berliner Allee 的 Brecht-Haus Weißensee（布莱希特故居），贝托尔特·布莱希特和海伦妮·魏格尔在 20 世纪 50 年代初曾住在这里。
4. 墙公园（Mauerpark）和那里的周日跳蚤市场，就在旁边。
5. 安东广场（Antonplatz）和 Kino Toni，一家小小的社区电影院。

<reflection>
第 4 项是个错误：墙公园（Mauerpark）并不在魏森湖区。它位于 Prenzlauer Berg 与 Gesundbrunnen 的交界处，从这里往西南还要坐一段有轨电车，而且它的跳蚤市场只在周日开放。在魏森湖区度过一个下午，它不该出现在清单上，所以我把它去掉，只保留区内的地方。
</reflection>

值得补充的实用信息：公墓周六和犹太节日闭园，男士入园需要遮盖头部。湖滨浴场只在夏季开放。沿 Berliner Allee 行驶的 M4 路有轨电车连接安东广场、布莱希特故居和白湖，所以剩下的 4 个地方一个下午就能逛完。
""",
    """
在柏林魏森湖区（Weißensee）悠闲地度过一个下午，可以这样安排：

- **白湖（Weißer See）**：魏森湖区就是以这片湖命名的。可以穿过公园绕湖散步，看看湖中央的喷泉，夏天到 **Strandbad Weißensee** 湖滨浴场游泳，再去岸边的 **Milchhäuschen** 咖啡馆喝杯咖啡、吃块蛋糕。
- **魏森湖犹太公墓**（Jüdischer Friedhof Weißensee）：欧洲最大的犹太公墓之一，1880 年启用，环境幽静，草木葱茏。周六和犹太节日闭园，男士入园需要遮盖头部。
- 位于 Berliner Allee 的 **Brecht-Haus Weißensee**（布莱希特故居）：贝托尔特·布莱希特和海伦妮·魏格尔 20 世纪 50 年代初曾住在这里。
- **安东广场（Antonplatz）**：这个区小小的中心。如果下午玩到了傍晚，还可以去社区电影院 **Kino Toni** 看场电影。

沿 Berliner Allee 行驶的 M4 路有轨电车能把其中大部分地方串起来，完全不用赶时间。
""",
)

_BAT_AND_BALL = scripted(
    """
球拍和球一共 1.10 美元，球拍比球贵 1.00 美元。

把 1.10 美元拆成 1.00 美元和 0.10 美元：球拍 1.00 美元，球的价格是 0.10 美元。

<reflection>
这样拆不满足第二个条件。如果球只要 0.10 美元，而球拍又比球贵 1.00 美元，那球拍就得 1.10 美元，两者加起来是 1.20 美元，而不是 1.10 美元。题目说的是球拍比球*贵* 1.00 美元，而不是球拍卖 1.00 美元。重新列式：设球的价格为 x，球拍的价格就是 x + 1.00，所以 x + (x + 1.00) = 1.10，得到 2x = 0.10，x = 0.05。
</reflection>

验算：球的价格是 0.05 美元，球拍是 1.05 美元。两者加起来是 1.10 美元，而且球拍正好比球贵 1.00 美元。2 个条件都成立。
""",
    """
球的价格是 **0.05 美元**（5 美分），球拍是 1.05 美元。

直觉上的 10 美分是错的：那样的话球拍要 1.10 美元，总价就成了 1.20 美元。
""",
)

_ALICE = scripted(
    """
题目说爱丽丝有 3 个兄弟，另外还有 2 个姐妹。问题问的是她的一个兄弟有几个姐妹。

他们都是同一家的兄弟姐妹，每个兄弟的姐妹就和爱丽丝的姐妹一样，所以每个兄弟有 2 个姐妹。

<reflection>
我犯了一个错误：爱丽丝的 2 个姐妹是从爱丽丝的角度数的，所以不包括她自己。从兄弟的角度看，爱丽丝也是他的姐妹。家里的女孩是爱丽丝加上她的 2 个姐妹，一共 3 个女孩，这 3 个女孩都是每个兄弟的姐妹。
</reflection>

所以这一家有 3 个女孩和 3 个男孩，每个兄弟都有 3 个姐妹（以及 2 个兄弟）。
""",
    """
爱丽丝的每个兄弟都有 **3** 个姐妹：爱丽丝的 2 个姐妹，再加上爱丽丝自己。
""",
)

_YESTERDAY = scripted(
    """
后天是星期六，我需要算出昨天是哪一天。

从星期六往回数 2 天：先是星期五，再是星期四。所以昨天是星期四。

<reflection>
我把参照的那一天弄错了。从后天往回数 2 天，落到的是今天，而不是昨天。后天是今天之后的第 2 天，所以今天是星期四。昨天是今天的前一天，也就是星期三。
</reflection>

从星期三往后验证一遍：昨天：星期三；今天：星期四；明天：星期五；后天：星期六。与题目一致。
""",
    """
昨天是**星期三**。如果后天是星期六，那么今天就是星期四，而星期四的前一天是星期三。
""",
)

_SHEEP = scripted(
    """
农夫一开始有 17 只羊，除了 9 只以外都跑了。我需要算出他还有多少只羊。

跑掉了 9 只羊，17 - 9 = 8，所以还剩 8 只羊。

<reflection>
我把这句话理解错了。“除了 9 只以外都跑了”并不是说跑了 9 只，而是说除了那 9 只，其余的羊全都跑了。所以跑掉的是 17 - 9 = 8 只，没跑的那 9 只就是留下来的羊。
</reflection>

验算：跑掉了 8 只，留下 9 只，8 + 9 = 17，与一开始的数量一致。
""",
    """
农夫还剩 **9** 只羊。“除了 9 只以外都跑了”的意思是，除了这 9 只，其余的羊都跑了（也就是跑掉了 8 只），所以留下的是 9 只。
""",
)


_ODD_NUMBERS = scripted(
    """
前 100 个奇数是 1、3、5、……、199。我需要求出它们的和。

1 到 100 加起来得 5050（100 × 101 / 2），而奇数大约是这些数的 2 倍，所以它们的和是 10100。

<reflection>
这样翻倍是错的。把 1 + 2 + ... + 100 翻倍，得到的是 2 + 4 + ... + 200，也就是前 100 个偶数，而不是奇数。每个奇数都比同一位置上的偶数小 1（1 = 2 - 1，3 = 4 - 1，……），所以奇数加起来得 10100 - 100 = 10000。用等差数列的公式也能验证：共 100 项，平均数为 (1 + 199) / 2 = 100，得到 100 × 100 = 10000。
</reflection>

从较小的情形可以看出规律：1 = 1²，1 + 3 = 4 = 2²，1 + 3 + 5 = 9 = 3²。前 n 个奇数加起来等于 n²，而 100² = 10000。
""",
    r"""
前 100 个奇数的和是 **10000**。

奇数逐个累加，每一步得到的都是完全平方数：

| 前几个奇数 | 和 | 平方 |
|---|---|---|
| 1 | 1 | 1² |
| 1 + 3 | 4 | 2² |
| 1 + 3 + 5 | 9 | 3² |
| 1 + 3 + 5 + 7 | 16 | 4² |

一般地，$\sum_{k=1}^{n} (2k - 1) = 2 \cdot \frac{n(n+1)}{2} - n = n^2$，所以当 $n = 100$ 时，得到 $100^2 = 10000$。

用代码暴力验证一下：
"""
    + ODD_NUMBERS_CODE,
)


SAMPLES: tuple[Sample, ...] = (
    Sample(
        slug="strawberry",
        title="数一数 strawberry 里有几个 r",
        prompt="单词“strawberry”里有几个 r？",
        expected="3",
        scripted_answer=_STRAWBERRY,
        language=LANGUAGE,
    ),
    Sample(
        slug="decimal-compare",
        title="9.11 和 9.9 哪个大？",
        prompt="9.11 和 9.9 哪个大？",
        expected="9.9",
        scripted_answer=_DECIMALS,
        language=LANGUAGE,
    ),
    Sample(
        slug="agatha",
        title="谁杀了阿加莎姑妈？",
        prompt=(
            "住在德雷伯里庄园（Dreadbury Mansion）的某个人杀了阿加莎姑妈。阿加莎、管家和查尔斯"
            "住在德雷伯里庄园，而且庄园里只住着他们。凶手总是恨受害者，而且绝不会比受害者更富有。"
            "凡是阿加莎姑妈恨的人，查尔斯都不恨。阿加莎恨除管家以外的所有人。管家恨所有不比阿加莎"
            "姑妈富有的人。阿加莎姑妈恨的每一个人，管家都恨。没有人恨所有人。阿加莎不是管家。"
            "是谁杀了阿加莎姑妈？"
        ),
        expected="阿加莎本人",
        scripted_answer=_AGATHA,
        language=LANGUAGE,
    ),
    Sample(
        slug="weissensee",
        title="柏林魏森湖区的一个下午",
        prompt="我要在柏林魏森湖区（Weißensee）待一个下午。当地有哪些值得一看的地方？",
        expected="白湖（Weißer See）",
        scripted_answer=_WEISSENSEE,
        language=LANGUAGE,
    ),
    Sample(
        slug="bat-and-ball",
        title="球拍和球",
        prompt="一个球拍和一个球一共 1.10 美元。球拍比球贵 1.00 美元。球多少钱？",
        expected="0.05 美元",
        scripted_answer=_BAT_AND_BALL,
        language=LANGUAGE,
    ),
    Sample(
        slug="alice-siblings",
        title="爱丽丝的兄弟姐妹",
        prompt="爱丽丝有 3 个兄弟，她还有 2 个姐妹。爱丽丝的兄弟有几个姐妹？",
        expected="3",
        scripted_answer=_ALICE,
        language=LANGUAGE,
    ),
    Sample(
        slug="day-before",
        title="昨天是星期几？",
        prompt="如果后天是星期六，那么昨天是星期几？",
        expected="星期三",
        scripted_answer=_YESTERDAY,
        language=LANGUAGE,
    ),
    Sample(
        slug="sheep",
        title="除了 9 只，羊都跑了",
        prompt="一个农夫有 17 只羊。除了 9 只以外，其余的羊都跑了。农夫还剩几只羊？",
        expected="9",
        scripted_answer=_SHEEP,
        language=LANGUAGE,
    ),
    Sample(
        slug="odd-numbers",
        title="前 100 个奇数之和",
        prompt="前 100 个奇数的和是多少？",
        expected="10000",
        scripted_answer=_ODD_NUMBERS,
        language=LANGUAGE,
    ),
)
