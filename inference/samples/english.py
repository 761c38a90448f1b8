"""The samples in English, the language they are seeded in (and shown in by default).

Each `scripted_answer` is written the way a Reflection-style model answers: reasoning in
`<thinking>`, at least one `<reflection>` that catches a real mistake made earlier in that
reasoning, and a correct `<output>`. `expected` is the short, correct final answer.
"""

# The answers are prose with one paragraph per line, as a model writes them; wrapping them at
# 100 columns would put line breaks into the text the simulator streams.
# ruff: noqa: E501

from __future__ import annotations

from inference.samples.script import ODD_NUMBERS_CODE, Sample, scripted

_STRAWBERRY = scripted(
    """
I need to count how many times the letter "r" appears in the word "strawberry".

The word is built from two parts, "straw" and "berry". "Straw" has one r, and "berry" has one r as well, so the word has 2 r's.

<reflection>
I counted too quickly. "Berry" is spelled b-e-r-r-y: it has a double r, so it contributes two r's, not one. Spelling the whole word letter by letter: s, t, r, a, w, b, e, r, r, y. The r's are the 3rd, 8th and 9th letters, so there are 3, not 2.
</reflection>

Checking once more by parts: "straw" gives one r and "berry" gives two, and 1 + 2 = 3. Both counts agree.
""",
    """
The word "strawberry" contains **3** r's: one in "straw" and two in "berry" (s-t-**r**-a-w-b-e-**r**-**r**-y).
""",
)

_DECIMALS = scripted(
    """
Both numbers have the same whole-number part, 9, so the decimal parts decide.

After the decimal point, 9.11 has "11" and 9.9 has "9". Since 11 is greater than 9, 9.11 should be the larger number.

<reflection>
That comparison is wrong. I compared the digits after the decimal point as if they were whole numbers, but decimal places have place values. In 9.11 the decimal part is 0.11, eleven hundredths. In 9.9 it is 0.9, nine tenths, which is 0.90 or ninety hundredths. Writing both numbers with two decimal places gives 9.11 and 9.90, and 9.90 is clearly larger. The trap comes from version numbers and dates, where 9.11 does come after 9.9, but that ordering is not numeric.
</reflection>

Check: 9.9 - 9.11 = 0.79, which is positive, so 9.9 is the larger number.
""",
    """
**9.9** is larger than 9.11.

Write both with the same number of decimal places: 9.90 vs. 9.11. Ninety hundredths beat eleven hundredths, so 9.9 is bigger by 0.79. (In version numbers 9.11 comes after 9.9, but as decimal numbers it is the smaller one.)
""",
)

_AGATHA = scripted(
    """
The killer lives in Dreadbury Mansion, so the suspects are Agatha, the butler and Charles. A killer must hate the victim and must not be richer than the victim.

First, whom does Agatha hate? She hates everyone except the butler. Agatha is not the butler, so she hates Charles and she hates herself.

Charles hates no one that Agatha hates. Agatha hates Agatha, so Charles does not hate Agatha. A killer always hates his victim, so Charles is not the killer.

The butler hates everyone Agatha hates, so he hates Agatha (and Charles). He hates the victim, so the butler must be the killer.

<reflection>
I stopped too early. Hating the victim is only one of the two conditions: a killer is also never richer than his victim, and I did not check that for the butler. The butler already hates Agatha and Charles. If he also hated himself, he would hate everyone, but no one hates everyone. So the butler does not hate himself. The butler hates everyone who is not richer than Agatha, and he does not hate himself, so he must be richer than Agatha. A killer is never richer than his victim, so the butler cannot be the killer. I also overlooked a suspect: "someone who lives in Dreadbury Mansion" includes Agatha herself.
</reflection>

That leaves Agatha. Check both conditions: she hates everyone except the butler, so she hates herself; and nobody is richer than themselves. Both conditions hold, and every other suspect is ruled out, so Agatha killed herself.
""",
    """
**Agatha herself** killed Aunt Agatha.

- **Charles** is ruled out: Agatha hates herself (she hates everyone except the butler), and Charles hates no one Agatha hates, so he does not hate Agatha. A killer always hates the victim.
- **The butler** is ruled out: he hates everyone Agatha hates, so if he hated himself he would hate everyone, which nobody does. Since he hates everyone not richer than Agatha but not himself, he is richer than Agatha, and a killer is never richer than the victim.
- **Agatha** fits both conditions: she hates herself and is not richer than herself.
""",
)

_WEISSENSEE = scripted(
    """
The question is about an afternoon in Weißensee, a district in the north-east of Berlin (part of the borough of Pankow). Good suggestions should be places that are actually in Weißensee and close enough to combine in a few hours.

Candidates:
1. The Weißer See itself, the lake the district is named after, with the park around it, the fountain in the middle of the lake, the Strandbad Weißensee lido and the Milchhäuschen café on the shore.
2. The Jewish Cemetery Weißensee, one of the largest Jewish cemeteries in Europe, opened in 1880.
3. The Brecht-Haus Weißensee on Berliner Allee, where Bertolt Brecht and Helene Weigel lived in the early 1950s.
4. The Mauerpark with its Sunday flea market, which is right next door.
5. Antonplatz with Kino Toni, a small neighbourhood cinema.

<reflection>
Item 4 is a mistake: the Mauerpark is not in Weißensee. It lies on the border of Prenzlauer Berg and Gesundbrunnen, a tram ride to the south-west, and its flea market only runs on Sundays. For an afternoon in Weißensee it does not belong on the list, so I will drop it and keep to places in the district itself.
</reflection>

Practical points worth adding: the cemetery is closed on Saturdays and Jewish holidays, and men are asked to cover their heads there. The lido only opens in the summer season. Tram M4 along Berliner Allee connects Antonplatz, the Brecht-Haus and the lake, so the remaining four spots fit into one afternoon.
""",
    """
A relaxed afternoon in Weißensee could look like this:

- **Weißer See**: the lake that gives the district its name. Walk around it through the park, watch the fountain in the middle, swim at the **Strandbad Weißensee** lido in summer, and stop for coffee or cake at the **Milchhäuschen** café on the shore.
- **Jewish Cemetery Weißensee** (Jüdischer Friedhof Weißensee): one of the largest Jewish cemeteries in Europe, opened in 1880, quiet and overgrown. It is closed on Saturdays and Jewish holidays, and men are asked to cover their heads.
- **Brecht-Haus Weißensee** on Berliner Allee: Bertolt Brecht and Helene Weigel lived here in the early 1950s.
- **Antonplatz**: the district's small centre, with the neighbourhood cinema **Kino Toni** if the afternoon turns into an evening.

Tram M4 along Berliner Allee links most of these, so you can do it all without hurrying.
""",
)

_BAT_AND_BALL = scripted(
    """
The bat and the ball together cost $1.10, and the bat costs $1.00 more than the ball.

Splitting $1.10 into $1.00 and $0.10, the bat is $1.00 and the ball is $0.10.

<reflection>
That split does not satisfy the second condition. If the ball cost $0.10 and the bat cost $1.00 more than the ball, the bat would cost $1.10, and together they would cost $1.20, not $1.10. The bat costs $1.00 *more than* the ball; it does not cost $1.00. Let me set it up properly: call the ball's price x. The bat costs x + 1.00, so x + (x + 1.00) = 1.10, which gives 2x = 0.10 and x = 0.05.
</reflection>

Check: the ball costs $0.05 and the bat costs $1.05. Together that is $1.10, and the bat costs exactly $1.00 more than the ball. Both conditions hold.
""",
    """
The ball costs **$0.05** (5 cents), and the bat costs $1.05.

The intuitive answer of 10 cents is wrong: then the bat would cost $1.10 and the total would be $1.20.
""",
)

_ALICE = scripted(
    """
Alice has 3 brothers and 2 sisters. The question asks how many sisters one of her brothers has.

All of them are siblings in the same family, so each brother has the same sisters as Alice: 2.

<reflection>
I made a mistake: Alice's 2 sisters are counted from Alice's point of view, so they do not include Alice herself. From a brother's point of view, Alice is a sister too. The girls in the family are Alice plus her 2 sisters, which makes 3 girls, and each brother has all 3 of them as sisters.
</reflection>

So the family has 3 girls and 3 boys, and every brother has 3 sisters (and 2 brothers).
""",
    """
Each of Alice's brothers has **3** sisters: Alice's 2 sisters plus Alice herself.
""",
)

_YESTERDAY = scripted(
    """
The day after tomorrow is Saturday. I need to find what day it was yesterday.

Counting back two days from Saturday: Friday, then Thursday. So yesterday was Thursday.

<reflection>
I mixed up the reference day. Counting back two days from the day after tomorrow lands on today, not on yesterday. The day after tomorrow is two days after today, so today is Thursday. Yesterday is one day before today, which is Wednesday.
</reflection>

Check forward from Wednesday: yesterday Wednesday, today Thursday, tomorrow Friday, the day after tomorrow Saturday. That matches the question.
""",
    """
Yesterday was **Wednesday**. If the day after tomorrow is Saturday, then today is Thursday, and the day before Thursday is Wednesday.
""",
)

_SHEEP = scripted(
    """
The farmer starts with 17 sheep, and all but 9 run away. I need the number left.

9 sheep run away, so 17 - 9 = 8 sheep are left.

<reflection>
I misread the phrase. "All but 9 run away" does not mean that 9 run away; it means that every sheep except 9 runs away. So 17 - 9 = 8 sheep run away, and the 9 that did not run away are the ones left.
</reflection>

Check: 8 sheep run away and 9 stay, and 8 + 9 = 17, which matches the starting number.
""",
    """
The farmer has **9** sheep left. "All but 9 run away" means every sheep except 9 ran off (that is 8 of them), so 9 remain.
""",
)


_ODD_NUMBERS = scripted(
    """
The first 100 odd numbers are 1, 3, 5, ..., 199. I need their sum.

The numbers from 1 to 100 have the sum 100 × 101 / 2 = 5050, and the odd numbers are about twice as large as those, so their sum is 10100.

<reflection>
That doubling is wrong. Doubling 1 + 2 + ... + 100 gives 2 + 4 + ... + 200, the first 100 even numbers, not the odd ones. Each odd number is one less than the even number in the same place (1 = 2 - 1, 3 = 4 - 1, ...), so the odd numbers add up to 10100 - 100 = 10000. The series formula agrees: 100 terms with a mean of (1 + 199) / 2 = 100 give 100 × 100 = 10000.
</reflection>

The small cases show the pattern: 1 = 1², 1 + 3 = 4 = 2², 1 + 3 + 5 = 9 = 3². The first n odd numbers add up to n², and 100² = 10000.
""",
    r"""
The sum of the first 100 odd numbers is **10000**.

The odd numbers add up to a perfect square at every step:

| first odd numbers | sum | square |
|---|---|---|
| 1 | 1 | 1² |
| 1 + 3 | 4 | 2² |
| 1 + 3 + 5 | 9 | 3² |
| 1 + 3 + 5 + 7 | 16 | 4² |

In general $\sum_{k=1}^{n} (2k - 1) = 2 \cdot \frac{n(n+1)}{2} - n = n^2$, so for $n = 100$ it is $100^2 = 10000$.

A brute-force check:
"""
    + ODD_NUMBERS_CODE,
)


SAMPLES: tuple[Sample, ...] = (
    Sample(
        slug="strawberry",
        title="Count the r's in strawberry",
        prompt='How many r\'s are in the word "strawberry"?',
        expected="3",
        scripted_answer=_STRAWBERRY,
    ),
    Sample(
        slug="decimal-compare",
        title="Which is larger, 9.11 or 9.9?",
        prompt="Which is larger, 9.11 or 9.9?",
        expected="9.9",
        scripted_answer=_DECIMALS,
    ),
    Sample(
        slug="agatha",
        title="Who killed Aunt Agatha?",
        prompt=(
            "Someone who lives in Dreadbury Mansion killed Aunt Agatha. Agatha, the butler, and "
            "Charles live in Dreadbury Mansion, and are the only people who live therein. A killer "
            "always hates his victim, and is never richer than his victim. Charles hates no one "
            "that Aunt Agatha hates. Agatha hates everyone except the butler. The butler hates "
            "everyone not richer than Aunt Agatha. The butler hates everyone Aunt Agatha hates. "
            "No one hates everyone. Agatha is not the butler. Who killed Aunt Agatha?"
        ),
        expected="Agatha herself",
        scripted_answer=_AGATHA,
    ),
    Sample(
        slug="weissensee",
        title="An afternoon in Berlin-Weißensee",
        prompt=(
            "I'm visiting Berlin-Weißensee for an afternoon. "
            "What are some local spots worth seeing?"
        ),
        expected="Weißer See",
        scripted_answer=_WEISSENSEE,
    ),
    Sample(
        slug="bat-and-ball",
        title="The bat and the ball",
        prompt=(
            "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
            "How much does the ball cost?"
        ),
        expected="$0.05",
        scripted_answer=_BAT_AND_BALL,
    ),
    Sample(
        slug="alice-siblings",
        title="Alice's brothers and sisters",
        prompt=(
            "Alice has 3 brothers and she also has 2 sisters. "
            "How many sisters does Alice's brother have?"
        ),
        expected="3",
        scripted_answer=_ALICE,
    ),
    Sample(
        slug="day-before",
        title="What day was yesterday?",
        prompt="If the day after tomorrow is Saturday, what day was it yesterday?",
        expected="Wednesday",
        scripted_answer=_YESTERDAY,
    ),
    Sample(
        slug="sheep",
        title="All but 9 sheep run away",
        prompt="A farmer has 17 sheep. All but 9 run away. How many sheep does the farmer have left?",
        expected="9",
        scripted_answer=_SHEEP,
    ),
    Sample(
        slug="odd-numbers",
        title="The sum of the first 100 odd numbers",
        prompt="What is the sum of the first 100 odd numbers?",
        expected="10000",
        scripted_answer=_ODD_NUMBERS,
    ),
)
